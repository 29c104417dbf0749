package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mirrord/mirrord/internal/api"
)

const tokenUsage = `usage: mirrord token [--name N] [--repo DISTRO/REPO...]
  Prints a new random token (line 1: give it to the client, as
  MIRRORD_TOKEN or in a --token-file) and the api.tokens line to paste
  into the config (line 2: only the token's sha256 is kept there).`

// tokenCommand is `mirrord token`.
func tokenCommand(args []string) error {
	fs := pflag.NewFlagSet("token", pflag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, tokenUsage) }
	name := fs.String("name", "ci", "the token's name, shown in logs and errors")
	repos := fs.StringArray("repo", nil, "a hosted or mirror repo the token may write (repeat for several)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New(tokenUsage)
	}
	if *name == "" || strings.ContainsAny(*name, "\"\\\n{}[],:#") {
		return fmt.Errorf("--name %q: use letters, digits, '-', '_', '.'", *name)
	}
	quoted := make([]string, 0, len(*repos))
	for _, r := range *repos {
		d, rn, ok := strings.Cut(r, "/")
		if !ok || d == "" || rn == "" || strings.ContainsAny(r, "\"\\\n ") || strings.Count(r, "/") != 1 {
			return fmt.Errorf("--repo %q is not DISTRO/REPO", r)
		}
		quoted = append(quoted, strconv.Quote(r))
	}
	tok := api.NewToken()
	fmt.Println(tok)
	fmt.Printf("    - {name: %s, sha256: %q, repos: [%s]}\n", *name, api.TokenHash(tok), strings.Join(quoted, ", "))
	if len(quoted) == 0 {
		fmt.Fprintln(os.Stderr, "mirrord: this token names no repo and may write nothing until repos are added to its line")
	}
	return nil
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

// tokenFlags registers the flags of clientToken on fs.
func tokenFlags(fs *pflag.FlagSet) (token, file *string) {
	token = fs.String("token", "", "bearer token (default $MIRRORD_TOKEN, then --token-file)")
	file = fs.String("token-file", "", "read the bearer token from this file (e.g. the server's admin.token)")
	return token, file
}
