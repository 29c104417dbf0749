package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
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
	// The example's data_dir is the systemd unit's /var/lib/mirrord, which
	// a test may not write; the flag overrides it as it does for anyone.
	dataDir := []string{"--data-dir", t.TempDir()}
	// As shipped, the example holds no usable token: copied as it is, it
	// stops mirrord at start and says how to make one.
	_, err = load(t, string(src), dataDir...)
	if err == nil || !strings.Contains(err.Error(), "api.tokens[0].sha256") || !strings.Contains(err.Error(), "mirrord token") {
		t.Fatalf("example config as shipped: %v; want api.tokens[0].sha256 refused with a hint at `mirrord token`", err)
	}
	if n := strings.Count(string(src), "REPLACE-ME"); n != 1 {
		t.Fatalf("example has %d placeholders, want 1", n)
	}
	sum := sha256.Sum256([]byte("a token made by mirrord token"))
	c, err := load(t, strings.Replace(string(src), "REPLACE-ME: run mirrord token", hex.EncodeToString(sum[:]), 1), dataDir...)
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

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second}, {"1h30m", 90 * time.Minute}, {"7d", 7 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour}, {"0", 0}, {" 5m ", 5 * time.Minute}, {"0d", 0},
	}
	for _, tt := range tests {
		if got, err := parseDuration(tt.in); err != nil || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"5", "3600", "1.5", "", "d", "7days", "-1d", "1d-2h", "1d+2h", "2h1d", "65536d", "soon"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, nil error; want an error", in, got)
		} else if !strings.Contains(err.Error(), strconv.Quote(in)) {
			t.Errorf("parseDuration(%q) error = %v, want it to show the value", in, err)
		}
	}
}

// TestDurationsNeedAUnit: pacoloco writes seconds as bare numbers; here
// one is an error that names the key, the value and what to write,
// wherever it comes from.
func TestDurationsNeedAUnit(t *testing.T) {
	dir := t.TempDir()
	base := "data_dir: " + dir + "\n"
	repo := base + "distros:\n  arch:\n    upstreams: [http://127.0.0.1:1/$repo/os/$arch]\n    repos:\n      core: {mode: mirror, sync_interval: %s}\n"
	tests := []struct {
		name, yaml string
		env        [2]string
		want       []string
	}{
		{"yaml int", base + "upstream: {connect_timeout: 5}\n", [2]string{}, []string{"upstream.connect_timeout: 5 has no unit", "5s"}},
		{"yaml float", base + "cache: {db_max_age: 1.5}\n", [2]string{}, []string{"cache.db_max_age: 1.5 has no unit", "1.5s"}},
		{"env", base, [2]string{"MIRRORD_UPSTREAM_CONNECT_TIMEOUT", "5"}, []string{`upstream.connect_timeout: "5" has no unit`, "5s", "(env MIRRORD_UPSTREAM_CONNECT_TIMEOUT)"}},
		{"repo interval", fmt.Sprintf(repo, "3600"), [2]string{}, []string{"distros.arch.repos.core.sync_interval: 3600 has no unit", "3600s"}},
		{"unknown unit", base + "sync: {prune_after: 7days}\n", [2]string{}, []string{`sync.prune_after: "7days" is not a duration`, "7d"}},
		{"a bool", base + "hosted: {debounce: true}\n", [2]string{}, []string{"hosted.debounce: true is not a duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env[0] != "" {
				t.Setenv(tt.env[0], tt.env[1])
			}
			_, err := load(t, tt.yaml)
			if err == nil {
				t.Fatalf("Load(%q) = nil error, want %q", tt.yaml, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load error = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}

	c, err := load(t, "sync: {prune_after: 7d}\nhosted: {retention: 1d12h}\n"+fmt.Sprintf(repo, "0"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sync.PruneAfter != 7*24*time.Hour || c.Hosted.Retention != 36*time.Hour || c.Distros["arch"].Repos["core"].SyncInterval != 0 {
		t.Errorf("prune_after, retention, sync_interval = %v, %v, %v; want 168h, 36h, 0 (the default)",
			c.Sync.PruneAfter, c.Hosted.Retention, c.Distros["arch"].Repos["core"].SyncInterval)
	}
}

// TestParseErrorsShowTheValue: every value that does not parse is shown
// with its key, all of them at once.
func TestParseErrorsShowTheValue(t *testing.T) {
	t.Setenv("MIRRORD_SERVER_FAST_PATH", "yes")
	yaml := "data_dir: " + t.TempDir() + `
cache: {max_size: lots, keep_versions: 2.5}
hosted: {workers: four}
sync: {max_bandwidth: [1]}
listn: x
distros:
  arch:
    layout: [a]
    upstreams: http://127.0.0.1:1/$repo/os/$arch
    mirrors: []
    repos:
      core: {mode: proxy, intervall: 1h}
`
	_, err := load(t, yaml)
	if err == nil {
		t.Fatal("Load = nil error")
	}
	for _, want := range []string{
		`server.fast_path: "yes" is not true or false (env MIRRORD_SERVER_FAST_PATH)`,
		`cache.max_size: invalid size "lots"`,
		`cache.keep_versions: 2.5 is not a whole number`,
		`hosted.workers: "four" is not a whole number`,
		`sync.max_bandwidth: [1] is not a whole number`,
		`distros.arch.layout: [a] is not a string`,
		`distros.arch.mirrors: unknown key`,
		`distros.arch.repos.core.intervall: unknown key`,
		"\nlistn: unknown key",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error lacks %q:\n%v", want, err)
		}
	}
}

func TestDistroDefaults(t *testing.T) {
	dir := t.TempDir()
	up := "http://127.0.0.1:1/$repo/os/$arch"
	arch := DefaultDistros()["archlinux"]
	mirrorlist := filepath.Join(dir, "mirrorlist")
	if err := os.WriteFile(mirrorlist, []byte("Server = "+up+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, distros string
		want          map[string]Distro
	}{
		{"any distro", "  other:\n    upstreams: [" + up + "]\n    repos: {core: {mode: proxy}}\n",
			map[string]Distro{"other": {Layout: "$repo/os/$arch", Arch: []string{"x86_64"}, Upstreams: []string{up}, Repos: map[string]Repo{"core": {Mode: ModeProxy}}}}},
		{"own layout and arch", "  alarm:\n    layout: $arch/$repo\n    arch: [aarch64, armv7h]\n    upstreams: [" + up + "]\n    repos: {core: {mode: proxy}}\n",
			map[string]Distro{"alarm": {Layout: "$arch/$repo", Arch: []string{"aarch64", "armv7h"}, Upstreams: []string{up}, Repos: map[string]Repo{"core": {Mode: ModeProxy}}}}},
		{"archlinux, repos only", "  archlinux:\n    repos: {core: {mode: mirror}}\n",
			map[string]Distro{"archlinux": {Layout: arch.Layout, Arch: arch.Arch, Upstreams: arch.Upstreams, Repos: map[string]Repo{"core": {Mode: ModeMirror}}}}},
		{"archlinux, own mirrors", "  archlinux:\n    upstreams: [" + up + "]\n",
			map[string]Distro{"archlinux": {Layout: arch.Layout, Arch: arch.Arch, Upstreams: []string{up}, Repos: arch.Repos}}},
		{"archlinux, no mirrors", "  archlinux:\n    upstreams: []\n    repos: {custom: {mode: hosted}}\n",
			map[string]Distro{"archlinux": {Layout: arch.Layout, Arch: arch.Arch, Upstreams: []string{}, Repos: map[string]Repo{"custom": {Mode: ModeHosted}}}}},
		{"archlinux, own mirrorlist", "  archlinux:\n    upstreams_file: " + mirrorlist + "\n",
			map[string]Distro{"archlinux": {Layout: arch.Layout, Arch: arch.Arch, UpstreamsFile: mirrorlist, Repos: arch.Repos}}},
		{"archlinux, nothing said", "  archlinux:\n", map[string]Distro{"archlinux": arch}},
		{"another distro beside it", "  archlinux: {}\n  mine:\n    repos: {custom: {mode: hosted}}\n",
			map[string]Distro{"archlinux": arch, "mine": {Layout: "$repo/os/$arch", Arch: []string{"x86_64"}, Repos: map[string]Repo{"custom": {Mode: ModeHosted}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "data_dir: " + dir + "\ndistros:\n" + tt.distros
			c, err := load(t, yaml)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Distros, tt.want) {
				t.Errorf("Load(%q).Distros =\n%+v\nwant\n%+v", yaml, c.Distros, tt.want)
			}
		})
	}
}

// TestNamesKeepCase: viper lowercases map keys; distro and repo names
// must reach the router, the tree and pacman's [MyRepo] as written.
func TestNamesKeepCase(t *testing.T) {
	yaml := "data_dir: " + t.TempDir() + `
api: {tokens: [{name: ci, sha256: ` + strings.Repeat("a", 64) + `, repos: [MyDistro/MyRepo]}]}
Distros:
  MyDistro:
    upstreams: ["http://127.0.0.1:1/$repo/os/$arch"]
    repos:
      MyRepo: {mode: hosted}
      myrepo: {mode: proxy}
      "1.0": {mode: proxy}
`
	c, err := load(t, yaml)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := c.Distros["MyDistro"]
	if !ok || len(c.Distros) != 1 {
		t.Fatalf("distros = %v, want MyDistro alone", sortedKeys(c.Distros))
	}
	if got := sortedKeys(d.Repos); !reflect.DeepEqual(got, []string{"1.0", "MyRepo", "myrepo"}) {
		t.Errorf("repos = %q, want [1.0 MyRepo myrepo]", got)
	}
	if d.Repos["MyRepo"].Mode != ModeHosted || d.Repos["myrepo"].Mode != ModeProxy {
		t.Errorf("repos = %+v", d.Repos)
	}
	if got := c.RepoDir("MyDistro", "MyRepo", "x86_64"); got != "MyDistro/MyRepo/os/x86_64" {
		t.Errorf("RepoDir = %q", got)
	}
	// Case-insensitive keys elsewhere still work as with viper.
	if c, err = load(t, "data_dir: "+t.TempDir()+"\nCache: {Max_Size: 1GiB}\n"); err != nil || c.Cache.MaxSize != 1<<30 {
		t.Errorf("Cache: {Max_Size: 1GiB} = %v, %v; want 1GiB", c, err)
	}
}

func TestBadNames(t *testing.T) {
	base := "data_dir: " + t.TempDir() + "\n"
	withRepo := func(name string) string {
		return base + "distros:\n  arch:\n    repos:\n      " + name + ": {mode: hosted}\n"
	}
	tests := []struct{ name, yaml, want string }{
		{"local", withRepo("local"), `distros.arch.repos.local: repo name "local" is reserved by pacman`},
		{"options", withRepo("options"), `distros.arch.repos.options: repo name "options" cannot be a repo in pacman.conf`},
		{"space", withRepo(`"my repo"`), `repo name "my repo" has ' '`},
		{"slash", withRepo("a/b"), `repo name "a/b" has '/'`},
		{"brackets", withRepo(`"[x]"`), `repo name "[x]" has '['`},
		{"dollar", withRepo(`"$repo"`), `repo name "$repo" has '$'`},
		{"leading dot", withRepo(".hidden"), `repo name ".hidden" must not start with '.'`},
		{"leading dash", withRepo("-x"), `repo name "-x" must not start with '.' or '-'`},
		{"not ASCII", withRepo("café"), `repo name "café" has 'é'`},
		{"empty", withRepo(`""`), `repo name "" must not be empty`},
		{"long", withRepo(strings.Repeat("r", 65)), "is longer than 64 characters"},
		{"distro slash", base + "distros:\n  a/b:\n    repos: {custom: {mode: hosted}}\n", `distros.a/b: distro name "a/b" has '/'`},
		{"distro percent", base + "distros:\n  a%2f:\n    repos: {custom: {mode: hosted}}\n", `distro name "a%2f" has '%'`},
		{"distros given twice", base + "distros: {}\nDistros: {}\n", "distros is given twice"},
		{"token in another case", base + "api: {tokens: [{name: ci, sha256: " + strings.Repeat("a", 64) + ", repos: [archlinux/Custom]}]}\n",
			`"archlinux/Custom" names no configured repo (names keep their case: archlinux/custom is configured)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%q) = %v, want an error with %q", tt.yaml, err, tt.want)
			}
		})
	}
}

func TestPrefetchKeys(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	want := Cache{Prefetch: true, PrefetchHorizon: 14 * 24 * time.Hour, PrefetchConcurrency: 2, PrefetchMaxBytes: 2 << 30}
	if got := c.Cache; got.Prefetch != want.Prefetch || got.PrefetchHorizon != want.PrefetchHorizon ||
		got.PrefetchConcurrency != want.PrefetchConcurrency || got.PrefetchMaxBytes != want.PrefetchMaxBytes {
		t.Errorf("prefetch defaults = %v %v %d %v, want true 336h 2 2GiB", got.Prefetch, got.PrefetchHorizon, got.PrefetchConcurrency, got.PrefetchMaxBytes)
	}
	t.Setenv("MIRRORD_CACHE_PREFETCH", "false")
	if c, err = load(t, ""); err != nil || c.Cache.Prefetch {
		t.Errorf("with MIRRORD_CACHE_PREFETCH=false: prefetch = %v, %v; want false", c.Cache.Prefetch, err)
	}

	for _, tt := range []struct{ name, yaml, want string }{
		{"zero horizon", "cache: {prefetch_horizon: 0s}\n", "cache.prefetch_horizon: must be a positive duration"},
		{"no concurrency", "cache: {prefetch_concurrency: 0}\n", "cache.prefetch_concurrency: must be between 1 and 64"},
		{"too much concurrency", "cache: {prefetch_concurrency: 65}\n", "cache.prefetch_concurrency: must be between 1 and 64"},
		{"no bytes", "cache: {prefetch_max_bytes: 0}\n", "cache.prefetch_max_bytes: must be positive"},
		{"bad bytes", "cache: {prefetch_max_bytes: lots}\n", "lots"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%q) = %v, want an error mentioning %q", tt.yaml, err, tt.want)
			}
		})
	}
}

// sourcesOf runs WriteSources and returns each key's source and value.
func sourcesOf(t *testing.T, c *Config) (map[string][2]string, string) {
	t.Helper()
	var b strings.Builder
	if err := c.WriteSources(&b); err != nil {
		t.Fatal(err)
	}
	out := map[string][2]string{}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	for _, line := range lines[1:] { // after "# file: ..."
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("sources line %q has fewer than 3 fields", line)
		}
		src, val := f[1], strings.Join(f[2:], " ")
		if src == "env" || src == "flag" {
			src, val = f[1]+" "+f[2], strings.Join(f[3:], " ")
		}
		out[f[0]] = [2]string{src, val}
	}
	return out, b.String()
}

func TestSources(t *testing.T) {
	dir := t.TempDir()
	hash := strings.Repeat("d", 64)
	yaml := "data_dir: " + dir + "\ncache: {max_size: 1GiB}\n" +
		"api: {tokens: [{name: ci, sha256: " + hash + ", repos: [archlinux/MyRepo]}]}\n" +
		"distros:\n  archlinux:\n    repos:\n      MyRepo: {mode: hosted}\n"
	t.Setenv("MIRRORD_HOSTED_WORKERS", "7")
	t.Setenv("MIRRORD_LISTEN", "127.0.0.1:9002") // the flag wins
	c, err := load(t, yaml, "--listen", "127.0.0.1:9003")
	if err != nil {
		t.Fatal(err)
	}
	got, text := sourcesOf(t, c)
	want := map[string][2]string{
		"listen":                              {"flag --listen", "127.0.0.1:9003"},
		"data_dir":                            {"file", dir},
		"hosted.workers":                      {"env MIRRORD_HOSTED_WORKERS", "7"},
		"cache.max_size":                      {"file", "1GiB"},
		"cache.db_max_age":                    {"default", "1m0s"},
		"api.tokens":                          {"file", "[{name: ci, sha256: <redacted>, repos: [archlinux/MyRepo]}]"},
		"distros.archlinux.layout":            {"default", "$repo/os/$arch"},
		"distros.archlinux.arch":              {"default", "[x86_64]"},
		"distros.archlinux.upstreams":         {"default", "['https://geo.mirror.pkgbuild.com/$repo/os/$arch', 'https://mirrors.kernel.org/archlinux/$repo/os/$arch']"},
		"distros.archlinux.repos.MyRepo.mode": {"file", "hosted"},
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("source of %s = %q, want %q", k, got[k], w)
		}
	}
	if strings.Contains(text, hash) {
		t.Errorf("WriteSources shows the token hash:\n%s", text)
	}
	if !strings.HasPrefix(text, "# file: "+c.File+"\n") {
		t.Errorf("WriteSources does not start with the file:\n%s", text)
	}
	// Every scalar key is shown (the empty signing and trust keys are
	// left out, as in the YAML).
	for _, d := range defaults {
		if _, ok := got[d.key]; !ok && d.val != "" {
			t.Errorf("WriteSources lacks %s:\n%s", d.key, text)
		}
	}

	// No file: every value is a default, the distros included.
	t.Chdir(t.TempDir())
	c, err = load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	got, text = sourcesOf(t, c)
	for k, v := range got {
		if k != "hosted.workers" && k != "listen" && v[0] != "default" {
			t.Errorf("without a file, %s comes from %q", k, v[0])
		}
	}
	if got["distros.archlinux.repos.core.mode"] != [2]string{"default", "proxy"} || !strings.HasPrefix(text, "# file: none\n") {
		t.Errorf("without a file:\n%s", text)
	}
}

// TestErrorsNameTheirSource: a bad value from a flag or the environment
// says so; the file is named at the top of every error.
func TestErrorsNameTheirSource(t *testing.T) {
	t.Setenv("MIRRORD_HOSTED_WORKERS", "0")
	file := filepath.Join(t.TempDir(), "plain-file")
	os.WriteFile(file, nil, 0o644)
	_, err := load(t, "cache: {keep_versions: 0}\n", "--data-dir", file)
	if err == nil {
		t.Fatal("Load = nil error")
	}
	for _, want := range []string{"hosted.workers: must be between 1 and 256 (env MIRRORD_HOSTED_WORKERS)", "(flag --data-dir)", "cache.keep_versions: must be at least 1\n"} {
		if !strings.Contains(err.Error()+"\n", want) {
			t.Errorf("Load error lacks %q:\n%v", want, err)
		}
	}
}
