package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"
)

// Repo modes (README.md, "Configuration").
const (
	ModeMirror = "mirror" // periodic full sync of the upstream repo
	ModeProxy  = "proxy"  // fetched on first request, then cached
	ModeHosted = "hosted" // published through the API
)

// Config is the whole configuration of one mirrord process.
type Config struct {
	Listen   string            `mapstructure:"listen" yaml:"listen"`
	Server   Server            `mapstructure:"server" yaml:"server"`
	DataDir  string            `mapstructure:"data_dir" yaml:"data_dir"`
	Log      Log               `mapstructure:"log" yaml:"log"`
	Cache    Cache             `mapstructure:"cache" yaml:"cache"`
	Upstream Upstream          `mapstructure:"upstream" yaml:"upstream"`
	Sync     Sync              `mapstructure:"sync" yaml:"sync"`
	Hosted   Hosted            `mapstructure:"hosted" yaml:"hosted"`
	API      API               `mapstructure:"api" yaml:"api"`
	Storage  Storage           `mapstructure:"storage" yaml:"storage"`
	Cluster  Cluster           `mapstructure:"cluster" yaml:"cluster"`
	Distros  map[string]Distro `mapstructure:"-" yaml:"distros"` // decoded apart, names keep their case: readFile

	// File is the config file that was read, "" when running on defaults.
	File string `mapstructure:"-" yaml:"-"`
	// sources says where each value came from, by key (WriteSources).
	sources map[string]string
}

// Server configures the HTTP server.
type Server struct {
	// FastPath answers plain and conditional GETs of files in the tree
	// with mirrord's own HTTP/1.1 loop (internal/fastpath); false puts
	// every request through net/http alone.
	FastPath bool `mapstructure:"fast_path" yaml:"fast_path"`
}

// Log selects the log level and format.
type Log struct {
	Level  string `mapstructure:"level" yaml:"level"`   // debug, info, warn, error
	Format string `mapstructure:"format" yaml:"format"` // text or json
	// Access logs one line per HTTP request (internal/accesslog).
	Access bool `mapstructure:"access" yaml:"access"`
}

// Cache bounds the pull-through cache.
type Cache struct {
	MaxSize      ByteSize      `mapstructure:"max_size" yaml:"max_size"`
	MemorySize   ByteSize      `mapstructure:"memory_size" yaml:"memory_size"`
	DBMaxAge     time.Duration `mapstructure:"db_max_age" yaml:"db_max_age"`
	KeepVersions int           `mapstructure:"keep_versions" yaml:"keep_versions"`
	FillOnAbort  bool          `mapstructure:"fill_on_abort" yaml:"fill_on_abort"`
	NegativeTTL  time.Duration `mapstructure:"negative_ttl" yaml:"negative_ttl"`
	// Prefetch fetches, when a proxy repo's database changes, the newer
	// version of each package name requested in the last
	// PrefetchHorizon, at most PrefetchConcurrency at a time and
	// PrefetchMaxBytes per run (internal/prefetch).
	Prefetch            bool          `mapstructure:"prefetch" yaml:"prefetch"`
	PrefetchHorizon     time.Duration `mapstructure:"prefetch_horizon" yaml:"prefetch_horizon"`
	PrefetchConcurrency int           `mapstructure:"prefetch_concurrency" yaml:"prefetch_concurrency"`
	PrefetchMaxBytes    ByteSize      `mapstructure:"prefetch_max_bytes" yaml:"prefetch_max_bytes"`
}

// Upstream tunes the HTTP client that talks to upstream mirrors.
type Upstream struct {
	Retries        int           `mapstructure:"retries" yaml:"retries"`
	ConnectTimeout time.Duration `mapstructure:"connect_timeout" yaml:"connect_timeout"`
	HeaderTimeout  time.Duration `mapstructure:"header_timeout" yaml:"header_timeout"`
	StallTimeout   time.Duration `mapstructure:"stall_timeout" yaml:"stall_timeout"`
	// MaxConnsPerMirror bounds the requests in flight to one mirror host;
	// more wait their turn.
	MaxConnsPerMirror int `mapstructure:"max_conns_per_mirror" yaml:"max_conns_per_mirror"`
	// UserAgent is sent with every request to a mirror; "" is
	// "mirrord/VERSION", filled in by the command that knows the version.
	UserAgent string `mapstructure:"user_agent" yaml:"user_agent"`
	// Proxy is the URL of the HTTP proxy for upstream traffic (a distro's
	// proxy overrides it); "" is the environment's HTTP_PROXY,
	// HTTPS_PROXY and NO_PROXY.
	Proxy string `mapstructure:"proxy" yaml:"proxy,omitempty"`
}

// Sync tunes mirror-mode repos.
type Sync struct {
	Concurrency int           `mapstructure:"concurrency" yaml:"concurrency"`
	PruneAfter  time.Duration `mapstructure:"prune_after" yaml:"prune_after"`
	// MaxBandwidth caps the bytes per second that syncs pull from
	// upstream, all their transfers together; 0 is no cap.
	MaxBandwidth ByteSize `mapstructure:"max_bandwidth" yaml:"max_bandwidth"`
}

// Hosted tunes the publish queue of hosted repos.
type Hosted struct {
	Workers   int           `mapstructure:"workers" yaml:"workers"`
	Debounce  time.Duration `mapstructure:"debounce" yaml:"debounce"`
	MaxDelay  time.Duration `mapstructure:"max_delay" yaml:"max_delay"`
	MaxUpload ByteSize      `mapstructure:"max_upload" yaml:"max_upload"`
	Retention time.Duration `mapstructure:"retention" yaml:"retention"`
	// SigningKey is an armored OpenPGP secret key that signs every hosted
	// repo's databases (and, with SignPackages, packages uploaded without
	// a signature); a repo's own signing_key overrides it. Its passphrase,
	// if any, comes from MIRRORD_HOSTED_SIGNING_PASSPHRASE, never a file.
	SigningKey   string `mapstructure:"signing_key" yaml:"signing_key,omitempty"`
	SignPackages bool   `mapstructure:"sign_packages" yaml:"sign_packages"`
	// TrustedKeys is an armored public keyring: an uploaded .sig must be
	// a valid signature by one of its keys.
	TrustedKeys string `mapstructure:"trusted_keys" yaml:"trusted_keys,omitempty"`
	// RequireSignatures refuses packages without a .sig that no repo key
	// would sign.
	RequireSignatures bool `mapstructure:"require_signatures" yaml:"require_signatures"`
	// MaxFilesPerPackage caps the file list of one upload (0: alpm's own
	// cap of 4,194,304 archive entries).
	MaxFilesPerPackage int `mapstructure:"max_files_per_package" yaml:"max_files_per_package"`
}

// Storage says where the tree is kept, and how.
type Storage struct {
	// TreeMode "public" (default) keeps the tree's files 0644 and folders
	// 0755, so that nginx or an rsync daemon running as another user can
	// serve it; "private" keeps them to mirrord's user (0600, 0700).
	TreeMode string `mapstructure:"tree_mode" yaml:"tree_mode"`
	// Backend is where the tree is kept: BackendFS, on this machine's
	// disk, or BackendS3, in the bucket S3 names.
	Backend string `mapstructure:"backend" yaml:"backend"`
	S3      S3     `mapstructure:"s3" yaml:"s3"`
}

// API configures the REST API.
type API struct {
	Tokens []Token `mapstructure:"tokens" yaml:"tokens"`
}

// Token allows writes to the repos it names ("distro/repo"). Only the
// token's sha256 is kept, so a leaked config file leaks no secret.
type Token struct {
	Name   string   `mapstructure:"name" yaml:"name"`
	SHA256 string   `mapstructure:"sha256" yaml:"sha256"`
	Repos  []string `mapstructure:"repos" yaml:"repos"`
}

// Distro is one upstream distribution: its URL layout, arches, mirrors and repos.
type Distro struct {
	Layout    string          `mapstructure:"layout" yaml:"layout"`
	Arch      []string        `mapstructure:"arch" yaml:"arch"`
	Upstreams []string        `mapstructure:"upstreams" yaml:"upstreams"`
	Repos     map[string]Repo `mapstructure:"repos" yaml:"repos"`
	// UpstreamsFile is a pacman mirrorlist whose Server lines follow
	// Upstreams; re-read when it changes (UpstreamsOf).
	UpstreamsFile string `mapstructure:"upstreams_file" yaml:"upstreams_file,omitempty"`
	// Proxy overrides upstream.proxy for this distro's mirrors.
	Proxy string `mapstructure:"proxy" yaml:"proxy,omitempty"`
}

// Repo is one repository of a distro.
type Repo struct {
	Mode         string        `mapstructure:"mode" yaml:"mode"`
	SyncInterval time.Duration `mapstructure:"sync_interval" yaml:"sync_interval,omitempty"`
	// Upstreams overrides the distro's mirror list for this repo.
	Upstreams []string `mapstructure:"upstreams" yaml:"upstreams,omitempty"`
	// UpstreamsFile is the repo's own mirrorlist, as the distro's.
	UpstreamsFile string `mapstructure:"upstreams_file" yaml:"upstreams_file,omitempty"`
	// SigningKey overrides hosted.signing_key for this hosted repo.
	SigningKey string `mapstructure:"signing_key" yaml:"signing_key,omitempty"`
}

// defaults is the one table of every scalar key and its default. Viper only
// reads an environment variable for a key it knows, so every key that may be
// set from MIRRORD_* must be listed here.
var defaults = []struct {
	key string
	val any
}{
	{"listen", "127.0.0.1:8080"},
	{"data_dir", "./data"},
	{"server.fast_path", true},
	{"log.level", "info"},
	{"log.format", "text"},
	{"log.access", true},
	{"cache.max_size", "50GiB"},
	{"cache.memory_size", "64MiB"},
	{"cache.db_max_age", "60s"},
	{"cache.keep_versions", 3},
	{"cache.fill_on_abort", true},
	{"cache.negative_ttl", "5s"},
	{"cache.prefetch", true},
	{"cache.prefetch_horizon", "336h"},
	{"cache.prefetch_concurrency", 2},
	{"cache.prefetch_max_bytes", "2GiB"},
	{"upstream.retries", 2},
	{"upstream.connect_timeout", "5s"},
	{"upstream.header_timeout", "8s"},
	{"upstream.stall_timeout", "8s"},
	{"upstream.max_conns_per_mirror", 16},
	{"upstream.user_agent", ""},
	{"upstream.proxy", ""},
	{"sync.concurrency", 4},
	{"sync.prune_after", "24h"},
	{"sync.max_bandwidth", "0"},
	{"hosted.workers", 4},
	{"hosted.debounce", "2s"},
	{"hosted.max_delay", "30s"},
	{"hosted.max_upload", "2GiB"},
	{"hosted.retention", "24h"},
	{"storage.tree_mode", "public"},
	{"storage.backend", BackendFS},
	{"storage.s3.endpoint", ""},
	{"storage.s3.bucket", ""},
	{"storage.s3.prefix", ""},
	{"storage.s3.region", ""},
	{"storage.s3.path_style", false},
	{"storage.s3.access_key_file", ""},
	{"storage.s3.secret_key_file", ""},
	{"storage.s3.redirect", false},
	{"storage.s3.redirect_expiry", "15m"},
	{"storage.s3.cache_size", "0"},
	{"cluster.node", ""},
	{"cluster.advertise", ""},
	{"cluster.peers", []string{}},
	{"cluster.secret_file", ""},
	{"hosted.signing_key", ""},
	{"hosted.sign_packages", true},
	{"hosted.trusted_keys", ""},
	{"hosted.require_signatures", false},
	{"hosted.max_files_per_package", 200000},
}

// DefaultDistros is used when the configuration names no distros at all:
// Arch Linux proxied from public mirrors, plus a hosted repo "custom".
// (Not "local": pacman reserves that name for its own database of
// installed packages, so [local] in pacman.conf cannot work.) A distros
// section that names archlinux keeps the mirrors and repos it leaves out
// (decodeDistros).
func DefaultDistros() map[string]Distro {
	return map[string]Distro{
		"archlinux": {
			Layout: DefaultLayout,
			Arch:   defaultArch(),
			Upstreams: []string{
				"https://geo.mirror.pkgbuild.com/$repo/os/$arch",
				"https://mirrors.kernel.org/archlinux/$repo/os/$arch",
			},
			Repos: map[string]Repo{
				"core":     {Mode: ModeProxy},
				"extra":    {Mode: ModeProxy},
				"multilib": {Mode: ModeProxy},
				"custom":   {Mode: ModeHosted},
			},
		},
	}
}

// flagKeys are the config keys that a flag of Flags or ListenFlag
// overrides, and the flag.
var flagKeys = map[string]string{"listen": "listen", "data_dir": "data-dir"}

// Flags registers the flags that every subcommand reading the config
// takes (serve, sync, config): the file and the data dir. Load reads the
// flags of this package that fs holds, and only those.
func Flags(fs *pflag.FlagSet) {
	fs.String("config", os.Getenv("MIRRORD_CONFIG"), "config file (YAML); env MIRRORD_CONFIG")
	fs.String("data-dir", "", "data directory (config key data_dir)")
}

// ListenFlag registers --listen, which only serve takes.
func ListenFlag(fs *pflag.FlagSet) {
	fs.String("listen", "", "address to listen on (config key listen)")
}

// Load reads the configuration: defaults < file < MIRRORD_* env < flags;
// distros come from the file alone (their names are keys, and keep their
// case). With storage.backend s3 it also reads the S3 keys, from
// EnvS3AccessKey and EnvS3SecretKey or else from the key files
// (loadS3Keys). fs may be nil. The result is validated; the error names every
// problem, and the config records where each value came from
// (WriteSources).
func Load(fs *pflag.FlagSet) (*Config, error) {
	path := ""
	if fs != nil {
		if f := fs.Lookup("config"); f != nil {
			path = f.Value.String()
		}
	}
	v := viper.New()
	for _, d := range defaults {
		v.SetDefault(d.key, d.val)
	}
	v.SetEnvPrefix("MIRRORD")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	sources := map[string]string{}
	if fs != nil {
		for key, flag := range flagKeys {
			if f := fs.Lookup(flag); f != nil && f.Changed {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, err
				}
				sources[key] = "flag --" + flag
			}
		}
	}
	where := "defaults"
	var distros *yaml.Node
	if path != "" {
		where = path
		rest, d, err := readFile(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		if err := v.MergeConfigMap(rest); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		distros = d
	}
	recordSources(v, sources)
	c := Config{File: path, sources: sources}
	errs := decode(v.AllSettings(), &c, "")
	if distros == nil {
		c.Distros = DefaultDistros()
		sources["distros"] = sourceDefault
	} else {
		sources["distros"] = sourceFile
		ds, derrs := decodeDistros(distros, sources)
		c.Distros, errs = ds, append(errs, derrs...)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("config %s:\n%w", where, c.blame(errors.Join(errs...)))
	}
	c.loadS3Keys()
	c.loadClusterSecret()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s:\n%w", where, c.blame(err))
	}
	return &c, nil
}

// Validate checks the whole configuration and returns every problem at
// once, each naming its key. With storage.backend s3 it reads again a key
// file that Load could not use, to say why.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &keyError{key, fmt.Sprintf(format, args...)})
	}
	if c.Listen == "" {
		bad("listen", "must not be empty")
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	} else if err := checkWritableDir(c.DataDir); err != nil {
		bad("data_dir", "%v", err)
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !oneOf(c.Log.Format, "text", "json") {
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if !oneOf(c.Storage.TreeMode, "public", "private") {
		bad("storage.tree_mode", "%q is not one of public, private", c.Storage.TreeMode)
	}
	c.checkStorage(bad)
	c.checkCluster(bad)
	if c.Cache.MaxSize <= 0 {
		bad("cache.max_size", "must be positive")
	}
	if c.Cache.MemorySize < 0 {
		bad("cache.memory_size", "must not be negative")
	}
	positive := map[string]time.Duration{
		"cache.db_max_age": c.Cache.DBMaxAge, "upstream.connect_timeout": c.Upstream.ConnectTimeout,
		"upstream.header_timeout": c.Upstream.HeaderTimeout, "upstream.stall_timeout": c.Upstream.StallTimeout,
		"hosted.debounce": c.Hosted.Debounce, "hosted.max_delay": c.Hosted.MaxDelay,
	}
	for _, k := range sortedKeys(positive) {
		if positive[k] <= 0 {
			bad(k, "must be a positive duration such as 30s")
		}
	}
	if c.Cache.KeepVersions < 1 {
		bad("cache.keep_versions", "must be at least 1")
	}
	if c.Cache.PrefetchHorizon <= 0 {
		bad("cache.prefetch_horizon", "must be a positive duration such as 336h (14 days)")
	}
	if c.Cache.PrefetchConcurrency < 1 || c.Cache.PrefetchConcurrency > 64 {
		bad("cache.prefetch_concurrency", "must be between 1 and 64")
	}
	if c.Cache.PrefetchMaxBytes <= 0 {
		bad("cache.prefetch_max_bytes", "must be positive, such as 2GiB (cache.prefetch: false turns prefetch off)")
	}
	if c.Upstream.Retries < 0 || c.Upstream.Retries > 10 {
		bad("upstream.retries", "must be between 0 and 10")
	}
	if c.Upstream.MaxConnsPerMirror < 1 || c.Upstream.MaxConnsPerMirror > 1024 {
		bad("upstream.max_conns_per_mirror", "must be between 1 and 1024")
	}
	checkUserAgent("upstream.user_agent", c.Upstream.UserAgent, bad)
	checkProxy("upstream.proxy", c.Upstream.Proxy, bad)
	if c.Sync.Concurrency < 1 || c.Sync.Concurrency > 64 {
		bad("sync.concurrency", "must be between 1 and 64")
	}
	if c.Sync.MaxBandwidth < 0 || (c.Sync.MaxBandwidth > 0 && c.Sync.MaxBandwidth < 64<<10) {
		bad("sync.max_bandwidth", "must be 0 (no cap) or at least 64KiB (bytes per second)")
	}
	if c.Hosted.Workers < 1 || c.Hosted.Workers > 256 {
		bad("hosted.workers", "must be between 1 and 256")
	}
	if c.Hosted.MaxUpload <= 0 {
		bad("hosted.max_upload", "must be positive")
	}
	if c.Hosted.MaxFilesPerPackage < 1 {
		bad("hosted.max_files_per_package", "must be positive")
	}
	if c.Hosted.MaxDelay < c.Hosted.Debounce {
		bad("hosted.max_delay", "must not be shorter than hosted.debounce")
	}
	checkKeyFile("hosted.signing_key", c.Hosted.SigningKey, bad)
	checkKeyFile("hosted.trusted_keys", c.Hosted.TrustedKeys, bad)
	if len(c.Distros) == 0 {
		bad("distros", "at least one distro is needed")
	}
	for _, dn := range sortedKeys(c.Distros) {
		c.validateDistro(dn, bad)
	}
	for i, t := range c.API.Tokens {
		key := fmt.Sprintf("api.tokens[%d]", i)
		if t.Name == "" {
			bad(key+".name", "must not be empty")
		}
		if len(t.SHA256) != 64 || strings.Trim(strings.ToLower(t.SHA256), "0123456789abcdef") != "" {
			bad(key+".sha256", "must be the 64 hex digits of a token's sha256: run `mirrord token --name %s --repo DISTRO/REPO` and paste the line it prints", orDefault(t.Name, "NAME"))
		}
		for _, r := range t.Repos {
			d, repo, ok := strings.Cut(r, "/")
			if !ok {
				bad(key+".repos", "%q is not DISTRO/REPO", r)
				continue
			}
			if _, ok := c.Distros[d].Repos[repo]; !ok {
				bad(key+".repos", "%q names no configured repo%s", r, c.caseHint(d, repo))
			}
		}
	}
	return errors.Join(errs...)
}

// reserved are the first path segments that mirrord's own endpoints use.
var reserved = []string{"api", "metrics", "healthz", "readyz", "static", "ui", "_mirrord"}

func (c *Config) validateDistro(dn string, bad func(key, format string, args ...any)) {
	d := c.Distros[dn]
	key := "distros." + dn
	if p := nameProblem(dn); p != "" {
		bad(key, "distro name %q %s", dn, p)
	}
	if oneOf(dn, reserved...) {
		bad(key, "distro name %q is reserved for mirrord's own endpoints", dn)
	}
	if err := checkLayout(d.Layout); err != nil {
		bad(key+".layout", "%v", err)
	} else if !strings.Contains(d.Layout, "$repo") && len(d.Repos) > 1 {
		bad(key+".layout", "a layout without $repo allows only one repo, got %d", len(d.Repos))
	}
	if len(d.Arch) == 0 {
		bad(key+".arch", "at least one architecture is needed")
	}
	seen := map[string]bool{}
	for _, a := range d.Arch {
		if !validName(a) || a == "any" {
			bad(key+".arch", "%q is not an architecture name", a)
		}
		if seen[a] {
			bad(key+".arch", "%q is listed twice", a)
		}
		seen[a] = true
	}
	if len(d.Repos) == 0 {
		bad(key+".repos", "at least one repo is needed")
	}
	for _, u := range d.Upstreams {
		checkUpstream(key+".upstreams", u, bad)
	}
	distroFile, distroFileOK := checkUpstreamsFile(key+".upstreams_file", d.UpstreamsFile, bad)
	checkProxy(key+".proxy", d.Proxy, bad)
	for _, rn := range sortedKeys(d.Repos) {
		r := d.Repos[rn]
		rkey := key + ".repos." + rn
		repoFile, repoFileOK := checkUpstreamsFile(rkey+".upstreams_file", r.UpstreamsFile, bad)
		switch {
		case nameProblem(rn) != "":
			bad(rkey, "repo name %q %s", rn, nameProblem(rn))
		case rn == "local":
			bad(rkey, `repo name "local" is reserved by pacman for its database of installed packages; pick another (e.g. "custom")`)
		case rn == "options":
			bad(rkey, `repo name "options" cannot be a repo in pacman.conf: [options] is pacman's own section; pick another`)
		}
		switch r.Mode {
		case ModeMirror, ModeProxy:
			// The repo's own list, else the distro's (UpstreamsOf).
			n, ok := len(r.Upstreams)+repoFile, repoFileOK
			if len(r.Upstreams) == 0 && r.UpstreamsFile == "" {
				n, ok = len(d.Upstreams)+distroFile, distroFileOK
			}
			if ok && n == 0 {
				bad(rkey+".upstreams", "a %s repo needs upstreams, or an upstreams_file with a Server line (here or on the distro)", r.Mode)
			}
		case ModeHosted:
			if len(r.Upstreams) > 0 || r.UpstreamsFile != "" {
				bad(rkey+".upstreams", "a hosted repo has no upstreams")
			}
		default:
			bad(rkey+".mode", "%q is not one of mirror, proxy, hosted", r.Mode)
		}
		if r.Mode == ModeMirror && r.SyncInterval != 0 && r.SyncInterval < time.Minute {
			bad(rkey+".sync_interval", "must be at least 1m")
		}
		for _, u := range r.Upstreams {
			checkUpstream(rkey+".upstreams", u, bad)
		}
		if r.SigningKey != "" && r.Mode != ModeHosted {
			bad(rkey+".signing_key", "only hosted repos are signed by mirrord")
		}
		checkKeyFile(rkey+".signing_key", r.SigningKey, bad)
	}
}

// caseHint points at a configured repo whose name differs from
// distro/repo only in case, "" when there is none: names keep their case.
func (c *Config) caseHint(distro, repo string) string {
	for _, dn := range sortedKeys(c.Distros) {
		for _, rn := range sortedKeys(c.Distros[dn].Repos) {
			if strings.EqualFold(dn, distro) && strings.EqualFold(rn, repo) {
				return fmt.Sprintf(" (names keep their case: %s/%s is configured)", dn, rn)
			}
		}
	}
	return ""
}

// checkUpstream checks a template of upstreams as a mirrorlist's Server
// line is checked: the same URLs, from either place.
func checkUpstream(key, u string, bad func(key, format string, args ...any)) {
	if err := checkServer(u); err != nil {
		bad(key, "%q: %v", redactUserinfo(u), err)
	}
}

// checkKeyFile proves that a key file named by key can be read; its
// content is parsed by internal/hosted at start.
func checkKeyFile(key, path string, bad func(key, format string, args ...any)) {
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		bad(key, "%v", err)
		return
	}
	f.Close()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkLayout accepts relative templates like "$repo/os/$arch" or "$arch/$repo".
func checkLayout(l string) error {
	if l == "" {
		return errors.New("must not be empty (Arch uses \"$repo/os/$arch\")")
	}
	if !strings.Contains(l, "$arch") {
		return fmt.Errorf("%q must contain $arch", l)
	}
	for _, seg := range strings.Split(l, "/") {
		if seg == "$repo" || seg == "$arch" {
			continue
		}
		if !validName(seg) || seg == "." || seg == ".." {
			return fmt.Errorf("%q: segment %q must be $repo, $arch or a plain name", l, seg)
		}
	}
	return nil
}

// validName allows the characters of pacman repo and arch names.
func validName(s string) bool { return nameProblem(s) == "" }

// nameProblem says why s cannot name a distro, repo or arch, "" when it
// can. Each is a segment of URL paths and of the tree; a repo's name is
// also its section in pacman.conf ([core]) and the stem of its db
// (core.db), and keeps its case in all three.
func nameProblem(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > 64:
		return "is longer than 64 characters"
	case s[0] == '.' || s[0] == '-':
		return "must not start with '.' or '-' (a hidden file, an option)"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Sprintf("has %q: use only letters, digits, '.', '_' and '-'", r)
		}
	}
	return ""
}

// checkWritableDir proves that dir exists and is writable, or could be
// created: its nearest existing parent is a writable folder. It creates
// nothing, so that `mirrord config` has no side effects; a bad data_dir
// still fails at start rather than on the first cache fill.
func checkWritableDir(dir string) error {
	p := filepath.Clean(dir)
	for {
		info, err := os.Stat(p)
		if err == nil {
			if !info.IsDir() {
				return fmt.Errorf("%s is not a folder", p)
			}
			if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
				return fmt.Errorf("%s is not writable: %w", p, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return err
		}
		p = parent
	}
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
