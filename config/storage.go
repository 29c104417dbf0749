package config

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Storage backends (storage.backend).
const (
	BackendFS = "fs" // the tree on this machine's disk
	BackendS3 = "s3" // the tree in an S3 bucket that several nodes share
)

// The environment variables that hold the S3 keys themselves. Load reads
// them directly, not through viper: a key is no config key, so it never
// reaches the decoded settings, the YAML or `mirrord config --sources`.
const (
	EnvS3AccessKey = "MIRRORD_STORAGE_S3_ACCESS_KEY"
	EnvS3SecretKey = "MIRRORD_STORAGE_S3_SECRET_KEY"
)

// S3 is the bucket of storage.backend s3. With backend fs it is not
// checked, and its key files are not read.
type S3 struct {
	// Endpoint is http(s)://host[:port] and nothing more: the scheme says
	// whether to use TLS.
	Endpoint string `mapstructure:"endpoint" yaml:"endpoint"`
	Bucket   string `mapstructure:"bucket" yaml:"bucket"`
	// Prefix, if set, is the folder of the bucket that holds the tree: a
	// clean relative path ("mirrors/lan", no '/' at either end).
	Prefix string `mapstructure:"prefix" yaml:"prefix"`
	// Region is "" for the endpoint's own.
	Region string `mapstructure:"region" yaml:"region"`
	// PathStyle always names the bucket in the URL's path
	// (host/bucket/key), never in its host name (bucket.host/key).
	PathStyle bool `mapstructure:"path_style" yaml:"path_style"`
	// AccessKeyFile and SecretKeyFile name the files that hold the keys,
	// one line each; EnvS3AccessKey and EnvS3SecretKey override them.
	AccessKeyFile string `mapstructure:"access_key_file" yaml:"access_key_file"`
	SecretKeyFile string `mapstructure:"secret_key_file" yaml:"secret_key_file"`
	// Redirect answers a hit of a package with a 307 to a presigned URL
	// of its object, which lives for RedirectExpiry.
	Redirect       bool          `mapstructure:"redirect" yaml:"redirect"`
	RedirectExpiry time.Duration `mapstructure:"redirect_expiry" yaml:"redirect_expiry"`
	// CacheSize is the local disk kept as a cache of the bucket; 0 is
	// cache.max_size.
	CacheSize ByteSize `mapstructure:"cache_size" yaml:"cache_size"`

	// AccessKey and SecretKey are the keys themselves, filled in by Load
	// (loadS3Keys). They have no config key and are never encoded: a
	// printed or logged config must not carry them (see also Format).
	AccessKey string `mapstructure:"-" yaml:"-" json:"-"`
	SecretKey string `mapstructure:"-" yaml:"-" json:"-"`
}

// Format prints s as fmt would with the keys shown as <redacted>, so that
// a config put in a log line with %v, or slog's text handler, shows no
// secret.
func (s S3) Format(f fmt.State, verb rune) {
	type plain S3 // without this method
	p := plain(s)
	p.AccessKey, p.SecretKey = redactSecret(p.AccessKey), redactSecret(p.SecretKey)
	fmt.Fprintf(f, fmt.FormatString(f, verb), p)
}

func redactSecret(s string) string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// maxPresign is the longest a presigned S3 (SigV4) URL may live.
const maxPresign = 7 * 24 * time.Hour

// loadS3Keys fills in the S3 keys, with backend s3 alone: each from the
// environment, else from its key file. The environment wins, as every
// MIRRORD_* variable wins over the config file, and the key file is then
// not read, so a node can take its keys from the environment under a
// config that names files it lacks. An empty variable is unset, as viper
// treats every other one. A key file that cannot be used leaves its key
// empty: Validate reads it again to say why, with the other problems.
func (c *Config) loadS3Keys() {
	if c.Storage.Backend != BackendS3 {
		return
	}
	s := &c.Storage.S3
	s.AccessKey = c.loadSecret("storage.s3.access_key", EnvS3AccessKey, s.AccessKeyFile)
	s.SecretKey = c.loadSecret("storage.s3.secret_key", EnvS3SecretKey, s.SecretKeyFile)
}

func (c *Config) loadSecret(key, env, file string) string {
	if v := os.Getenv(env); v != "" {
		c.sources[key] = "env " + env // blame names it in a problem with the key
		return v
	}
	if file == "" {
		return ""
	}
	v, _ := readKeyFile(file) // Validate reports the problem
	return v
}

// checkStorage checks storage.backend and, with s3, the s3 section.
func (c *Config) checkStorage(bad func(key, format string, args ...any)) {
	switch c.Storage.Backend {
	case BackendFS:
		return
	case BackendS3:
	default:
		bad("storage.backend", "%q is not one of fs, s3", c.Storage.Backend)
		return
	}
	s := c.Storage.S3
	checkEndpoint("storage.s3.endpoint", s.Endpoint, bad)
	if s.Bucket == "" {
		bad("storage.s3.bucket", "required with storage.backend s3")
	} else if p := bucketProblem(s.Bucket); p != "" {
		bad("storage.s3.bucket", "%q %s", s.Bucket, p)
	}
	if p := prefixProblem(s.Prefix); p != "" {
		bad("storage.s3.prefix", "%q %s", s.Prefix, p)
	}
	checkSecret("storage.s3.access_key", "storage.s3.access_key_file", EnvS3AccessKey, s.AccessKey, s.AccessKeyFile, bad)
	checkSecret("storage.s3.secret_key", "storage.s3.secret_key_file", EnvS3SecretKey, s.SecretKey, s.SecretKeyFile, bad)
	if s.Redirect && (s.RedirectExpiry < time.Second || s.RedirectExpiry > maxPresign) {
		bad("storage.s3.redirect_expiry", "%v must be between 1s and 7d (the longest a presigned S3 URL lives)", s.RedirectExpiry)
	}
	if s.CacheSize < 0 {
		bad("storage.s3.cache_size", "%d must not be negative (0: as large as cache.max_size)", int64(s.CacheSize))
	}
}

// checkSecret checks the S3 key at key, read from the environment
// variable env or from file (fileKey). No message quotes the key or
// anything read from the file: errors are logged.
func checkSecret(key, fileKey, env, value, file string, bad func(key, format string, args ...any)) {
	switch {
	case value != "":
		if p := secretProblem(value); p != "" {
			bad(key, "%s", p)
		}
	case file == "":
		bad(fileKey, "required with storage.backend s3: a file holding the key, or the key itself in %s", env)
	default:
		// Load read the file and failed; this says why. (Were the file
		// fine now, Validate was called on a config that Load did not
		// fill in.)
		if _, err := readKeyFile(file); err != nil {
			bad(fileKey, "%v", err)
		}
	}
}

// maxKeyFile bounds what readKeyFile reads: an S3 key is some 20 to 40
// characters and a cluster secret not much more, so anything larger is
// the wrong file.
const maxKeyFile = 4 << 10

// readKeyFile reads a secret (an S3 key, the cluster's secret) from the
// file at path: one line, its line break trimmed. Its errors name the
// file, never what it holds.
func readKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	// Group-readable is allowed (root:mirrord 0640 is the usual way to
	// hand a service its secret); readable by everyone is not.
	switch {
	case !info.Mode().IsRegular():
		return "", fmt.Errorf("%s is not a regular file", path)
	case info.Mode().Perm()&0o004 != 0:
		return "", fmt.Errorf("%s has mode %04o: every user can read it; chmod o-r it", path, info.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxKeyFile {
		return "", fmt.Errorf("%s is larger than %d bytes: not a key file", path, maxKeyFile)
	}
	key := strings.TrimRight(string(b), "\r\n")
	if key == "" {
		return "", fmt.Errorf("%s is empty: want the key on one line", path)
	}
	if p := secretProblem(key); p != "" {
		return "", fmt.Errorf("%s %s", path, p)
	}
	return key, nil
}

// secretProblem says why s cannot be an S3 key, "" when it can. A blank
// is refused too: a space pasted with a key fails every signature with
// an error that does not say why.
func secretProblem(s string) string {
	for _, c := range []byte(s) {
		switch {
		case c == '\n':
			return "holds more than one line: want the key alone"
		case c <= ' ' || c >= 0x7f:
			return "holds a blank, control or non-ASCII character: want the key alone"
		}
	}
	return ""
}

// checkEndpoint accepts http(s)://host[:port] and nothing more; a lone
// trailing '/' names nothing more. A message shows the URL only with its
// user information hidden, and nothing of it when it does not parse.
func checkEndpoint(key, e string, bad func(key, format string, args ...any)) {
	if e == "" {
		bad(key, "required with storage.backend s3: http(s)://host[:port]")
		return
	}
	u, err := url.Parse(e)
	if err != nil {
		// No detail: url.Error repeats the value, and even its inner
		// error may quote a piece of a key (a secret key's '/' ends
		// the host, so the rest of it is an "invalid port").
		bad(key, "not a URL of the form http(s)://host[:port]")
		return
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		bad(key, "%q: want http:// or https://", redactURL(u))
	case u.User != nil:
		bad(key, "%q: no user information: the keys go in storage.s3.access_key_file and secret_key_file", redactURL(u))
	case u.Hostname() == "":
		bad(key, "%q: the URL has no host", redactURL(u))
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || strings.Contains(e, "#"):
		bad(key, "%q: want http(s)://host[:port], nothing after it (the bucket is storage.s3.bucket, a folder in it storage.s3.prefix)", redactURL(u))
	default:
		if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				bad(key, "%q: port %q is not between 1 and 65535", redactURL(u), p)
			}
		}
	}
}

// bucketProblem says why b cannot name an S3 bucket, "" when it can (the
// naming rules of AWS, which self-hosted stores follow).
func bucketProblem(b string) string {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Sprintf("has %d characters: want 3 to 63", len(b))
	}
	for _, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return fmt.Sprintf("has %q: use only lowercase letters, digits, '.' and '-'", r)
		}
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	switch {
	case !alnum(b[0]) || !alnum(b[len(b)-1]):
		return "must start and end with a lowercase letter or digit"
	case strings.Contains(b, ".."):
		return "must not have two dots in a row"
	case net.ParseIP(b) != nil:
		return "must not look like an IP address"
	}
	return ""
}

// prefixProblem says why p cannot be the folder of the bucket that holds
// the tree, "" when it can: a clean relative path, as every tree path is
// (the same rules as the store's tree paths).
func prefixProblem(p string) string {
	if p == "" {
		return ""
	}
	if strings.HasPrefix(p, "/") {
		return "must be relative: no leading '/'"
	}
	for _, c := range []byte(p) {
		if c < ' ' || c == 0x7f || c == '\\' {
			return "holds a control character or '\\'"
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return "has an empty segment: no '//' and no trailing '/'"
		case ".", "..":
			return fmt.Sprintf("has a %q segment: want a clean path such as mirrors/lan", seg)
		}
	}
	return ""
}

// DiskCacheSize bounds the evictable files on this machine's disk:
// storage.s3.cache_size with the s3 backend, when set (the disk is then a
// cache of the bucket), else cache.max_size.
func (c *Config) DiskCacheSize() ByteSize {
	if c.Storage.Backend == BackendS3 && c.Storage.S3.CacheSize > 0 {
		return c.Storage.S3.CacheSize
	}
	return c.Cache.MaxSize
}
