package main

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/mirrord/mirrord/config"
)

// loadConfig parses the flags shared by the subcommands and loads the
// config, with the defaults only a command knows filled in: the user
// agent names this build's version.
func loadConfig(name string, args []string) (*config.Config, error) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	config.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cfg, err := config.Load(fs)
	if err != nil {
		return nil, err
	}
	if cfg.Upstream.UserAgent == "" {
		cfg.Upstream.UserAgent = "mirrord/" + version()
	}
	return cfg, nil
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
