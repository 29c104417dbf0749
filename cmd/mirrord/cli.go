package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// rootCommand is the tree of subcommands. Each registers only the flags it
// reads, so that its --help lists those and no others; `mirrord help`,
// --help and --version exit 0, a bad command line exits 1.
func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "mirrord",
		Short:         "A mirror, pull-through cache and host of pacman repositories",
		Version:       version(),
		SilenceUsage:  true, // a failed run shows its error, not the usage
		SilenceErrors: true, // main prints the error, once
	}
	root.SetVersionTemplate("mirrord {{.Version}}\n")
	root.SetFlagErrorFunc(usageError)
	root.AddCommand(serveCommand(), syncCommand(), publishCommand(), deleteCommand(),
		tokenCommand(), configCommand(), versionCommand())
	return root // cobra adds help and completion (bash, zsh, fish, powershell)
}

// usageError is err, a mistake in the command line, with where the usage is.
func usageError(cmd *cobra.Command, err error) error {
	return fmt.Errorf("%w\nsee %s --help", err, cmd.CommandPath())
}

// checkArgs is check, with usageError's hint on a failure.
func checkArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError(cmd, err)
		}
		return nil
	}
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  checkArgs(cobra.NoArgs),
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "mirrord", version()) },
	}
}

// completeConfigFlags completes --config with YAML files and --data-dir
// with folders.
func completeConfigFlags(cmd *cobra.Command) {
	cmd.MarkFlagFilename("config", "yaml", "yml")
	cmd.MarkFlagDirname("data-dir")
}
