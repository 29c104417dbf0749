package main

import (
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mirrord/mirrord/config"
)

// configCommand is `mirrord config`.
func configCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective config (token hashes redacted)",
		Long: `Prints the configuration serve would run with: the defaults, then the
file, the MIRRORD_* environment and the flags, validated.`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return printConfig(cmd.OutOrStdout(), cmd.Flags()) },
	}
	config.Flags(cmd.Flags())
	cmd.Flags().Bool("sources", false, "show where each value came from: default, file, env or flag")
	completeConfigFlags(cmd)
	return cmd
}

// loadConfig loads the config with the flags of the config package that
// the subcommand's flag set holds (config.Flags, config.ListenFlag), with
// the defaults only a command knows filled in: the user agent names this
// build's version.
func loadConfig(flags *pflag.FlagSet) (*config.Config, error) {
	cfg, err := config.Load(flags)
	if err != nil {
		return nil, err
	}
	if cfg.Upstream.UserAgent == "" {
		cfg.Upstream.UserAgent = "mirrord/" + version()
	}
	return cfg, nil
}

func printConfig(w io.Writer, flags *pflag.FlagSet) error {
	cfg, err := loadConfig(flags)
	if err != nil {
		return err
	}
	if sources, _ := flags.GetBool("sources"); sources {
		return cfg.WriteSources(w)
	}
	out, err := cfg.Redacted().YAML()
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
