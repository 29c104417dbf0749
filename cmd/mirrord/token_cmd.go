package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mirrord/mirrord/internal/api"
)

// tokenCommand is `mirrord token`.
func tokenCommand() *cobra.Command {
	var name string
	var repos []string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make a new token and its api.tokens line",
		Long: `Prints a new random token (line 1: give it to the client, as
MIRRORD_TOKEN or in a --token-file) and the api.tokens line to paste into
the config (line 2: only the token's sha256 is kept there).`,
		Example: `  mirrord token --name ci --repo archlinux/custom`,
		Args:    checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return newToken(cmd.OutOrStdout(), cmd.ErrOrStderr(), name, repos)
		},
	}
	cmd.Flags().StringVar(&name, "name", "ci", "the token's name, shown in logs and errors")
	cmd.Flags().StringArrayVar(&repos, "repo", nil, "a hosted or mirror repo the token may write (repeat for several)")
	return cmd
}

// newToken prints a new token named name for repos, and its api.tokens line.
func newToken(stdout, stderr io.Writer, name string, repos []string) error {
	if name == "" || strings.ContainsAny(name, "\"\\\n{}[],:#") {
		return fmt.Errorf("--name %q: use letters, digits, '-', '_', '.'", name)
	}
	quoted := make([]string, 0, len(repos))
	for _, r := range repos {
		d, rn, ok := strings.Cut(r, "/")
		if !ok || d == "" || rn == "" || strings.ContainsAny(r, "\"\\\n ") || strings.Count(r, "/") != 1 {
			return fmt.Errorf("--repo %q is not DISTRO/REPO", r)
		}
		quoted = append(quoted, strconv.Quote(r))
	}
	tok := api.NewToken()
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stdout, "    - {name: %s, sha256: %q, repos: [%s]}\n", name, api.TokenHash(tok), strings.Join(quoted, ", "))
	if len(quoted) == 0 {
		fmt.Fprintln(stderr, "mirrord: this token names no repo and may write nothing until repos are added to its line")
	}
	return nil
}

// remoteFlags are the flags of the subcommands that write to a running
// mirrord (publish, delete): where it is, and the bearer token.
type remoteFlags struct{ url, token, tokenFile string }

func (f *remoteFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.url, "url", os.Getenv("MIRRORD_URL"), "base URL of the mirrord, e.g. http://mirror.lan:8080 (default $MIRRORD_URL)")
	fs.StringVar(&f.token, "token", "", "bearer token (default $MIRRORD_TOKEN, then --token-file)")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the bearer token from this file (e.g. the server's admin.token)")
	cmd.MarkFlagFilename("token-file")
}

// client is the API client of the flags, or what is missing.
func (f *remoteFlags) client(cmd *cobra.Command) (*publisher, error) {
	if f.url == "" {
		return nil, usageError(cmd, errors.New("--url (or MIRRORD_URL) is required"))
	}
	tok, err := clientToken(f.token, f.tokenFile)
	if err != nil {
		return nil, err
	}
	return &publisher{
		base:   strings.TrimSuffix(f.url, "/"),
		token:  tok,
		client: &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 5 * time.Minute}},
	}, nil
}

// splitRepo splits a DISTRO/REPO argument.
func splitRepo(cmd *cobra.Command, arg string) (distro, repo string, err error) {
	distro, repo, ok := strings.Cut(arg, "/")
	if !ok || distro == "" || repo == "" || strings.Contains(repo, "/") {
		return "", "", usageError(cmd, fmt.Errorf("%q is not DISTRO/REPO", arg))
	}
	return distro, repo, nil
}

// clientToken is the bearer token of a write subcommand: --token, else
// $MIRRORD_TOKEN, else the first line of --token-file. A token is never
// sent in a URL.
func clientToken(token, file string) (string, error) {
	if token != "" {
		return token, nil
	}
	if t := os.Getenv("MIRRORD_TOKEN"); t != "" {
		return t, nil
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		if t := strings.TrimSpace(first); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("--token-file %s is empty", file)
	}
	return "", errors.New("every write needs a token: --token, MIRRORD_TOKEN or --token-file " +
		"(on the server's machine, with no api.tokens configured: --token-file DATA_DIR/admin.token)")
}
