package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// load runs Load with a fresh flag set, the given YAML (if any) and args.
func load(t *testing.T, yaml string, args ...string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	Flags(fs)
	ListenFlag(fs)
	if yaml != "" {
		path := filepath.Join(t.TempDir(), "mirrord.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs)
}

func TestDefaults(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.DataDir != "./data" {
		t.Errorf("listen, data_dir = %q, %q; want 127.0.0.1:8080, ./data", c.Listen, c.DataDir)
	}
	if c.Cache.MaxSize != 50<<30 || c.Cache.DBMaxAge != time.Minute || c.Cache.KeepVersions != 3 {
		t.Errorf("cache = %+v", c.Cache)
	}
	if c.Upstream.MaxConnsPerMirror != 16 {
		t.Errorf("upstream.max_conns_per_mirror = %d, want 16", c.Upstream.MaxConnsPerMirror)
	}
	arch, ok := c.Distros["archlinux"]
	if !ok {
		t.Fatal("default distro archlinux missing")
	}
	want := map[string]string{"core": ModeProxy, "extra": ModeProxy, "multilib": ModeProxy, "custom": ModeHosted}
	for name, mode := range want {
		if got := arch.Repos[name].Mode; got != mode {
			t.Errorf("repo %s mode = %q, want %q", name, got, mode)
		}
	}
}

func TestExampleLoads(t *testing.T) {
	src, err := os.ReadFile("mirrord.example.yaml") // before Chdir: tests run in the package folder
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	// As shipped, the example holds no usable token: copied as it is, it
	// stops mirrord at start and says how to make one.
	_, err = load(t, string(src))
	if err == nil || !strings.Contains(err.Error(), "api.tokens[0].sha256") || !strings.Contains(err.Error(), "mirrord token") {
		t.Fatalf("example config as shipped: %v; want api.tokens[0].sha256 refused with a hint at `mirrord token`", err)
	}
	if n := strings.Count(string(src), "REPLACE-ME"); n != 1 {
		t.Fatalf("example has %d placeholders, want 1", n)
	}
	sum := sha256.Sum256([]byte("a token made by mirrord token"))
	c, err := load(t, strings.Replace(string(src), "REPLACE-ME: run mirrord token", hex.EncodeToString(sum[:]), 1))
	if err != nil {
		t.Fatalf("example config with a real token: %v", err)
	}
	if got := c.Distros["archlinux"].Repos["core"].Mode; got != ModeMirror {
		t.Errorf("example core mode = %q, want mirror", got)
	}
	if got := c.Distros["archlinuxarm"].Layout; got != "$arch/$repo" {
		t.Errorf("example archlinuxarm layout = %q", got)
	}
	if len(c.API.Tokens) != 1 || c.API.Tokens[0].Repos[0] != "archlinux/custom" {
		t.Errorf("example tokens = %+v", c.API.Tokens)
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	yaml := "listen: 127.0.0.1:9001\ndata_dir: " + dir + "\ncache: {max_size: 1GiB, db_max_age: 10s}\n"

	c, err := load(t, yaml)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9001" || c.Cache.MaxSize != 1<<30 || c.Cache.DBMaxAge != 10*time.Second {
		t.Errorf("file values not applied: %+v", c)
	}

	t.Setenv("MIRRORD_LISTEN", "127.0.0.1:9002")
	t.Setenv("MIRRORD_CACHE_MAX_SIZE", "2GiB")
	t.Setenv("MIRRORD_HOSTED_WORKERS", "7")
	c, err = load(t, yaml)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9002" || c.Cache.MaxSize != 2<<30 || c.Hosted.Workers != 7 {
		t.Errorf("env did not override file: listen=%q max_size=%v workers=%d", c.Listen, c.Cache.MaxSize, c.Hosted.Workers)
	}

	c, err = load(t, yaml, "--listen", "127.0.0.1:9003")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9003" {
		t.Errorf("flag did not override env: listen=%q", c.Listen)
	}
}

func TestRejects(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain-file")
	os.WriteFile(file, nil, 0o644)
	base := "data_dir: " + dir + "\n"
	distro := func(body string) string {
		return base + "distros:\n  arch:\n" + body
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", base + "cache: {max_sise: 1GiB}\n", "max_sise"},
		{"unknown top key", base + "listn: x\n", "listn"},
		{"bad size", base + "cache: {max_size: lots}\n", "lots"},
		{"bad duration", base + "cache: {db_max_age: soon}\n", "cache.db_max_age"},
		{"no file list", base + "hosted: {max_files_per_package: 0}\n", "hosted.max_files_per_package"},
		{"bad mode", distro("    layout: $repo/os/$arch\n    arch: [x86_64]\n    upstreams: [http://127.0.0.1:1/$repo/os/$arch]\n    repos: {core: {mode: mirrorr}}\n"),
			"distros.arch.repos.core.mode"},
		{"bad layout", distro("    layout: ../$repo/$arch\n    arch: [x86_64]\n    repos: {custom: {mode: hosted}}\n"), "distros.arch.layout"},
		{"layout without arch", distro("    layout: $repo/os\n    arch: [x86_64]\n    repos: {custom: {mode: hosted}}\n"), "must contain $arch"},
		{"duplicate repo", distro("    layout: $repo/os/$arch\n    arch: [x86_64]\n    repos:\n      custom: {mode: hosted}\n      custom: {mode: hosted}\n"), "already defined"},
		{"proxy without upstreams", distro("    layout: $repo/os/$arch\n    arch: [x86_64]\n    repos: {core: {mode: proxy}}\n"), "needs upstreams"},
		{"reserved distro", base + "distros:\n  api:\n    layout: $repo/os/$arch\n    arch: [x86_64]\n    repos: {custom: {mode: hosted}}\n", "reserved"},
		{"bad token", base + "api: {tokens: [{name: ci, sha256: abc, repos: [archlinux/custom]}]}\n", "api.tokens[0].sha256"},
		{"repo named local", distro("    layout: $repo/os/$arch\n    arch: [x86_64]\n    repos: {local: {mode: hosted}}\n"), "reserved by pacman"},
		{"token for unknown repo", base + "api: {tokens: [{name: ci, sha256: " + strings.Repeat("a", 64) + ", repos: [archlinux/nope]}]}\n", "names no configured repo"},
		{"no conns per mirror", base + "upstream: {max_conns_per_mirror: 0}\n", "upstream.max_conns_per_mirror"},
		{"too many conns per mirror", base + "upstream: {max_conns_per_mirror: 1025}\n", "upstream.max_conns_per_mirror"},
		{"unreachable data dir", "data_dir: " + file + "/sub\n", "data_dir"},
		{"missing signing key", base + "hosted: {signing_key: " + dir + "/nope.asc}\n", "hosted.signing_key"},
		{"missing trusted keys", base + "hosted: {trusted_keys: " + dir + "/nope.asc}\n", "hosted.trusted_keys"},
		{"signing key on a proxy repo", distro("    layout: $repo/os/$arch\n    arch: [x86_64]\n    upstreams: [http://127.0.0.1:1/$repo/os/$arch]\n    repos: {core: {mode: proxy, signing_key: " + file + "}}\n"),
			"distros.arch.repos.core.signing_key: only hosted repos"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml)
			if err == nil {
				t.Fatalf("Load(%q) = nil error, want one mentioning %q", tt.yaml, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error = %v, want it to mention %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "mirrord.yaml") {
				t.Errorf("Load error = %v, want it to name the file", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := &Config{DataDir: t.TempDir(), Distros: DefaultDistros()}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate of a zero config = nil")
	}
	for _, key := range []string{"listen", "log.level", "cache.max_size", "hosted.workers"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("Validate error lacks %s: %v", key, err)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
	}{
		{"50GiB", 50 << 30}, {"512MB", 512e6}, {"1.5G", 3 << 29}, {"4096", 4096}, {"2 GiB", 2 << 30}, {"10kib", 10 << 10},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "GiB", "-1GiB", "1XB", "1e30TiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = nil error", in)
		}
	}
	if s := ByteSize(50 << 30).String(); s != "50GiB" {
		t.Errorf("String() = %q, want 50GiB", s)
	}
}

func TestRedactedYAML(t *testing.T) {
	c := &Config{API: API{Tokens: []Token{{Name: "ci", SHA256: strings.Repeat("b", 64)}}}}
	out, err := c.Redacted().YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), strings.Repeat("b", 64)) || !strings.Contains(string(out), "<redacted>") {
		t.Errorf("redacted YAML shows the hash:\n%s", out)
	}
	if c.API.Tokens[0].SHA256 == "<redacted>" {
		t.Error("Redacted changed the original config")
	}
}

func TestExpand(t *testing.T) {
	tests := []struct{ tmpl, repo, arch, want string }{
		{"$repo/os/$arch", "core", "x86_64", "core/os/x86_64"},
		{"$arch/$repo", "core", "aarch64", "aarch64/core"},
		{"https://m.example/$repo/os/$arch/", "extra", "x86_64", "https://m.example/extra/os/x86_64"},
	}
	for _, tt := range tests {
		if got := Expand(tt.tmpl, tt.repo, tt.arch); got != tt.want {
			t.Errorf("Expand(%q) = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func TestServerFastPath(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Server.FastPath {
		t.Error("server.fast_path defaults to false, want true")
	}
	t.Setenv("MIRRORD_SERVER_FAST_PATH", "false")
	if c, err = load(t, ""); err != nil || c.Server.FastPath {
		t.Errorf("with MIRRORD_SERVER_FAST_PATH=false: fast_path = %v, %v; want false", c.Server.FastPath, err)
	}
}
