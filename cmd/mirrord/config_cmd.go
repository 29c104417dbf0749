package main

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/mirrord/mirrord/config"
)

// loadConfig parses the flags shared by the subcommands and loads the config.
func loadConfig(name string, args []string) (*config.Config, error) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	config.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return config.Load(fs)
}

func printConfig(args []string) error {
	cfg, err := loadConfig("config", args)
	if err != nil {
		return err
	}
	out, err := cfg.Redacted().YAML()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}
