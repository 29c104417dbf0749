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
	fs := pflag.NewFlagSet("config", pflag.ContinueOnError)
	config.Flags(fs)
	sources := fs.Bool("sources", false, "show where each value came from: default, file, env or flag")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(fs)
	if err != nil {
		return err
	}
	if *sources {
		return cfg.WriteSources(os.Stdout)
	}
	out, err := cfg.Redacted().YAML()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}
