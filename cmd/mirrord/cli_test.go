package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestMain lets the test binary stand in for mirrord: run with
// MIRRORD_TEST_MAIN=1 it is main, so that tests see real exit codes and
// output without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("MIRRORD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mirrord runs the command line args in a fresh process, in dir (a temp
// dir if ""), and returns its stdout, stderr and exit code.
func mirrord(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MIRRORD_TEST_MAIN=1", "GORACE=atexit_sleep_ms=0", "MIRRORD_CONFIG=", "MIRRORD_URL=", "MIRRORD_TOKEN=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("mirrord %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// ownFlags are the flags each subcommand takes besides --help: its help
// must list these and no others.
var ownFlags = map[string][]string{
	"serve":   {"config", "data-dir", "listen"},
	"sync":    {"config", "data-dir"},
	"publish": {"force", "timeout", "token", "token-file", "url", "wait"},
	"delete":  {"arch", "token", "token-file", "url"},
	"token":   {"name", "repo"},
	"config":  {"config", "data-dir", "sources"},
	"version": nil,
}

var flagRE = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z][a-z-]*)`)

// helpFlags returns the flags a --help output lists, but --help.
func helpFlags(help string) []string {
	var out []string
	for _, m := range flagRE.FindAllStringSubmatch(help, -1) {
		if m[1] != "help" {
			out = append(out, m[1])
		}
	}
	slices.Sort(out)
	return out
}

func TestHelp(t *testing.T) {
	for _, c := range rootCommand().Commands() {
		if _, ok := ownFlags[c.Name()]; !ok {
			t.Errorf("mirrord %s is not in ownFlags", c.Name())
		}
	}
	for name, want := range ownFlags {
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {"help", name}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				stdout, stderr, code := mirrord(t, "", args...)
				if code != 0 || stderr != "" {
					t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
				}
				if !strings.Contains(stdout, "Usage:\n  mirrord "+name) {
					t.Errorf("no usage of %s in:\n%s", name, stdout)
				}
				if got := helpFlags(stdout); !slices.Equal(got, want) {
					t.Errorf("flags listed = %v, want %v; help:\n%s", got, want, stdout)
				}
			})
		}
	}
	// The root's help lists every subcommand.
	stdout, _, code := mirrord(t, "", "--help")
	if code != 0 {
		t.Fatalf("mirrord --help: exit %d", code)
	}
	for name := range ownFlags {
		if !regexp.MustCompile(`(?m)^  ` + name + ` `).MatchString(stdout) {
			t.Errorf("mirrord --help does not list %s:\n%s", name, stdout)
		}
	}
}

// A mistake in the command line exits 1 with one line saying what is
// wrong (and where the usage is), never the usage dumped on a failure.
func TestCommandLineErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"sync takes no --listen", []string{"sync", "--listen", "127.0.0.1:1"}, "unknown flag: --listen\nsee mirrord sync --help"},
		{"config takes no --listen", []string{"config", "--listen", "127.0.0.1:1"}, "unknown flag: --listen"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"serve takes no arguments", []string{"serve", "extra"}, "see mirrord serve --help"},
		{"publish without files", []string{"publish", "archlinux/custom"}, "requires at least 2 arg(s)"},
		{"publish without --url", []string{"publish", "archlinux/custom", "x.pkg.tar.zst"}, "--url (or MIRRORD_URL) is required"},
		{"publish to no DISTRO/REPO", []string{"publish", "--url", "http://127.0.0.1:1", "--token", "t", "custom", "x.pkg.tar.zst"}, `"custom" is not DISTRO/REPO`},
		{"publish without a token", []string{"publish", "--url", "http://127.0.0.1:1", "archlinux/custom", "x.pkg.tar.zst"}, "every write needs a token"},
		{"delete without a name", []string{"delete", "--url", "http://127.0.0.1:1", "archlinux/custom"}, "accepts 2 arg(s), received 1"},
		{"token with a bad repo", []string{"token", "--repo", "custom"}, `--repo "custom" is not DISTRO/REPO`},
		{"bad duration", []string{"publish", "--timeout", "soon"}, `invalid argument "soon" for "--timeout"`},
		{"version takes no arguments", []string{"version", "x"}, "see mirrord version --help"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := mirrord(t, "", tt.args...)
			if code != 1 || !strings.HasPrefix(stderr, "mirrord: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("mirrord %s: exit %d, stderr %q; want 1 and %q", strings.Join(tt.args, " "), code, stderr, tt.want)
			}
			if strings.Contains(stdout+stderr, "Flags:") {
				t.Errorf("the usage is printed on an error:\n%s%s", stdout, stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	a, _, code := mirrord(t, "", "version")
	b, _, code2 := mirrord(t, "", "--version")
	if code != 0 || code2 != 0 || a != "mirrord "+version()+"\n" || a != b {
		t.Errorf("version = %q (exit %d), --version = %q (exit %d); want both %q", a, code, b, code2, "mirrord "+version()+"\n")
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		stdout, stderr, code := mirrord(t, "", "completion", shell)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "__mirrord_") {
			t.Errorf("completion %s: exit %d, stderr %q, %d bytes of script", shell, code, stderr, len(stdout))
		}
	}
	// sync completes the config's mirror repos, and their distros.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mirrord.yaml")
	os.WriteFile(cfg, []byte(`distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://127.0.0.1:1/$repo/os/$arch"]
    repos:
      core: {mode: mirror}
      extra: {mode: proxy}
      custom: {mode: hosted}
`), 0o644)
	stdout, _, code := mirrord(t, dir, "__complete", "sync", "--config", cfg, "")
	if got := strings.Fields(stdout); code != 0 || !slices.Equal(got, []string{"archlinux", "archlinux/core", ":4"}) {
		t.Errorf("complete sync = %q (exit %d), want archlinux, archlinux/core and no file completion", got, code)
	}
}

// README's Commands section names every subcommand, each with exactly the
// flags it takes.
func TestREADMECommands(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(data), "\n## Commands\n")
	section, _, _ = strings.Cut(section, "\n## ")
	documented := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^    mirrord (\S+)(.*)$`).FindAllStringSubmatch(section, -1) {
		var flags []string
		for _, f := range regexp.MustCompile(`--([a-z][a-z-]*)`).FindAllStringSubmatch(m[2], -1) {
			flags = append(flags, f[1])
		}
		slices.Sort(flags)
		documented[m[1]] = slices.Compact(flags)
	}
	root := rootCommand()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		got, ok := documented[c.Name()]
		if !ok {
			t.Errorf("README's Commands section lacks mirrord %s", c.Name())
			continue
		}
		var want []string
		c.Flags().VisitAll(func(f *pflag.Flag) { want = append(want, f.Name) })
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("README: mirrord %s with flags %v, the command takes %v", c.Name(), got, want)
		}
		delete(documented, c.Name())
	}
	for name := range documented {
		t.Errorf("README documents mirrord %s, which does not exist", name)
	}
}
