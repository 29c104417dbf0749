package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The keys written into key files and the environment: no output of the
// config package may show them.
const (
	testAccessKey = "AKIAs3cr3tACCESS"
	testSecretKey = "wJalrXUtnFEMI/s3cr3tSECRET/bPxRfiCY"
)

// s3Files writes testAccessKey and testSecretKey into key files under dir
// as an editor saves them (a line break at the end).
func s3Files(t *testing.T, dir string) (access, secret string) {
	t.Helper()
	access, secret = filepath.Join(dir, "s3-access-key"), filepath.Join(dir, "s3-secret-key")
	if err := os.WriteFile(access, []byte(testAccessKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte(testSecretKey+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return access, secret
}

// s3YAML is a config with backend s3 whose s3 section is a working one
// with the fields of kv (key, raw YAML value, ...) put in; a value "-"
// leaves the key out.
func s3YAML(t *testing.T, kv ...string) string {
	t.Helper()
	dir := t.TempDir()
	access, secret := s3Files(t, dir)
	fields := map[string]string{
		"endpoint": "http://127.0.0.1:8333", "bucket": "mirrord",
		"access_key_file": access, "secret_key_file": secret,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		fields[kv[i]] = kv[i+1]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nstorage:\n  backend: s3\n  s3:\n", dir)
	for _, k := range sortedKeys(fields) {
		if fields[k] != "-" {
			fmt.Fprintf(&b, "    %s: %s\n", k, fields[k])
		}
	}
	return b.String()
}

// noSecret fails the test if out shows either test key, or any 8 bytes
// of one: a piece of a key is a leak too.
func noSecret(t *testing.T, what, out string) {
	t.Helper()
	for _, key := range []string{testAccessKey, testSecretKey} {
		for i := 0; i+8 <= len(key); i++ {
			if strings.Contains(out, key[i:i+8]) {
				t.Errorf("%s shows a piece of a key (%q):\n%s", what, key[i:i+8], out)
				return
			}
		}
	}
}

func TestStorageDefaults(t *testing.T) {
	t.Chdir(t.TempDir())
	// With backend fs the s3 section is not checked and the key files
	// are not read, however wrong; the keys in the environment are not
	// taken either.
	t.Setenv(EnvS3AccessKey, testAccessKey)
	c, err := load(t, "storage:\n  s3: {endpoint: 'ftp://x', bucket: X, access_key_file: /nonexistent/key, redirect: true, redirect_expiry: 0s}\n")
	if err != nil {
		t.Fatalf("backend fs with a wrong s3 section: %v", err)
	}
	if c.Storage.Backend != BackendFS || c.Storage.S3.AccessKey != "" || c.Storage.S3.SecretKey != "" {
		t.Errorf("backend %q, keys %q %q; want fs and no keys", c.Storage.Backend, c.Storage.S3.AccessKey, c.Storage.S3.SecretKey)
	}

	c, err = load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	want := S3{RedirectExpiry: 15 * time.Minute}
	if c.Storage.Backend != BackendFS || c.Storage.S3 != want {
		t.Errorf("defaults: backend %q, s3 %+v; want fs, %+v", c.Storage.Backend, c.Storage.S3, want)
	}
}

func TestS3Loads(t *testing.T) {
	c, err := load(t, s3YAML(t, "endpoint", "https://s3.example.com/", "prefix", "mirrors/lan", "region", "eu-west-1",
		"path_style", "true", "redirect", "true", "redirect_expiry", "7d", "cache_size", "10GiB"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Storage.S3
	got := []any{c.Storage.Backend, s.Endpoint, s.Bucket, s.Prefix, s.Region, s.PathStyle, s.Redirect, s.RedirectExpiry, s.CacheSize}
	want := []any{BackendS3, "https://s3.example.com/", "mirrord", "mirrors/lan", "eu-west-1", true, true, 7 * 24 * time.Hour, ByteSize(10 << 30)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("s3 = %v, want %v", got, want)
	}
	// The line break at the end of each file is not part of the key.
	if s.AccessKey != testAccessKey || s.SecretKey != testSecretKey {
		t.Errorf("keys = %q, %q; want %q, %q", s.AccessKey, s.SecretKey, testAccessKey, testSecretKey)
	}

	// What else is accepted.
	for _, kv := range [][]string{
		{"endpoint", "http://[::1]:9000"},
		{"endpoint", "http://minio:9000/"},
		{"bucket", "a.b-c"},
		{"bucket", "abc"},
		{"bucket", strings.Repeat("a", 63)},
		{"prefix", "'mirrord'"},
		{"redirect", "false", "redirect_expiry", "0s"}, // not checked without redirect
		{"redirect", "true", "redirect_expiry", "1s"},
		{"cache_size", "0"},
	} {
		if _, err := load(t, s3YAML(t, kv...)); err != nil {
			t.Errorf("with %q: %v", kv, err)
		}
	}
}

// TestS3KeysFromEnv: a key in the environment wins over its key file, as
// every MIRRORD_* variable wins over the file, and the file is then not
// read; an empty variable is unset.
func TestS3KeysFromEnv(t *testing.T) {
	t.Setenv(EnvS3AccessKey, "AKIAFROMENV")
	c, err := load(t, s3YAML(t, "access_key_file", "/nonexistent/access-key"))
	if err != nil {
		t.Fatalf("access key in the env, its file missing: %v", err)
	}
	if c.Storage.S3.AccessKey != "AKIAFROMENV" || c.Storage.S3.SecretKey != testSecretKey {
		t.Errorf("keys = %q, %q; want the env's access key and the file's secret key", c.Storage.S3.AccessKey, c.Storage.S3.SecretKey)
	}

	t.Setenv(EnvS3SecretKey, "secret-from-env")
	if c, err = load(t, s3YAML(t, "access_key_file", "-", "secret_key_file", "-")); err != nil {
		t.Fatalf("both keys in the env, no key files: %v", err)
	}
	if c.Storage.S3.AccessKey != "AKIAFROMENV" || c.Storage.S3.SecretKey != "secret-from-env" {
		t.Errorf("keys = %q, %q; want both from the env", c.Storage.S3.AccessKey, c.Storage.S3.SecretKey)
	}

	t.Setenv(EnvS3AccessKey, "")
	t.Setenv(EnvS3SecretKey, "")
	if c, err = load(t, s3YAML(t)); err != nil {
		t.Fatal(err)
	}
	if c.Storage.S3.AccessKey != testAccessKey || c.Storage.S3.SecretKey != testSecretKey {
		t.Errorf("with the variables empty, keys = %q, %q; want the files'", c.Storage.S3.AccessKey, c.Storage.S3.SecretKey)
	}

	// The other s3 keys come from the environment as every key does.
	dir := t.TempDir()
	access, secret := s3Files(t, dir)
	for k, v := range map[string]string{
		"MIRRORD_STORAGE_BACKEND": "s3", "MIRRORD_STORAGE_S3_ENDPOINT": "http://127.0.0.1:8333",
		"MIRRORD_STORAGE_S3_BUCKET": "from-env", "MIRRORD_STORAGE_S3_ACCESS_KEY_FILE": access,
		"MIRRORD_STORAGE_S3_SECRET_KEY_FILE": secret, "MIRRORD_STORAGE_S3_PATH_STYLE": "true",
	} {
		t.Setenv(k, v)
	}
	if c, err = load(t, "data_dir: "+dir+"\n"); err != nil {
		t.Fatal(err)
	}
	if s := c.Storage.S3; c.Storage.Backend != BackendS3 || s.Bucket != "from-env" || !s.PathStyle || s.AccessKey != testAccessKey {
		t.Errorf("from the env: backend %q, %+v", c.Storage.Backend, s)
	}
}

// s3Rejects are configs with backend s3 that Load refuses, the error
// each must hold; the test keys are in the key files (and, with env, in
// the environment) so that every error can be checked for them.
func s3Rejects(t *testing.T) []struct {
	name, yaml string
	env        [2]string
	want       string
} {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty", "")
	newline := write("newline", "\n")
	twoLines := write("two-lines", testAccessKey+"\n"+testSecretKey+"\n")
	awsCredentials := write("credentials", "[default]\naws_access_key_id = "+testAccessKey+"\naws_secret_access_key = "+testSecretKey+"\n")
	blank := write("blank", testAccessKey+" \n")
	large := write("large", strings.Repeat(testSecretKey, 200))
	none := filepath.Join(dir, "none")
	no := [2]string{}
	return []struct {
		name, yaml string
		env        [2]string
		want       string
	}{
		{"backend", strings.Replace(s3YAML(t), "backend: s3", "backend: s4", 1), no, `storage.backend: "s4" is not one of fs, s3`},
		{"no endpoint", s3YAML(t, "endpoint", "-"), no, "storage.s3.endpoint: required with storage.backend s3"},
		{"endpoint scheme", s3YAML(t, "endpoint", "ftp://s3.example.com"), no, `storage.s3.endpoint: "ftp://s3.example.com": want http:// or https://`},
		{"endpoint without scheme", s3YAML(t, "endpoint", "s3.example.com:9000"), no, "storage.s3.endpoint"},
		{"endpoint path", s3YAML(t, "endpoint", "http://s3.example.com/mirrord"), no, `"http://s3.example.com/mirrord": want http(s)://host[:port], nothing after it`},
		{"endpoint query", s3YAML(t, "endpoint", "'http://s3.example.com?x=1'"), no, "nothing after it"},
		{"endpoint empty query", s3YAML(t, "endpoint", "'http://s3.example.com?'"), no, "nothing after it"},
		{"endpoint fragment", s3YAML(t, "endpoint", "'http://s3.example.com#'"), no, "nothing after it"},
		{"endpoint no host", s3YAML(t, "endpoint", "'http://:8333'"), no, `storage.s3.endpoint: "http://:8333": the URL has no host`},
		{"endpoint port 0", s3YAML(t, "endpoint", "'http://s3.example.com:0'"), no, `port "0" is not between 1 and 65535`},
		{"endpoint port too high", s3YAML(t, "endpoint", "'http://s3.example.com:65536'"), no, `port "65536" is not between 1 and 65535`},
		{"endpoint empty port", s3YAML(t, "endpoint", "'http://s3.example.com:'"), no, `port "" is not between 1 and 65535`},
		{"endpoint not a URL", s3YAML(t, "endpoint", "'http://s3 example.com'"), no, "storage.s3.endpoint: not a URL"},
		// Keys in the endpoint's user information are hidden, whole. A
		// secret key's '/' ends the host: what follows is no port, and
		// must not be quoted as one.
		{"endpoint user", s3YAML(t, "endpoint", "'http://"+testAccessKey+":pass@s3.example.com'"), no,
			`storage.s3.endpoint: "http://redacted@s3.example.com": no user information`},
		{"endpoint user with a slash", s3YAML(t, "endpoint", "'http://"+testAccessKey+":"+testSecretKey+"@s3.example.com'"), no,
			"storage.s3.endpoint: not a URL of the form http(s)://host[:port]"},
		{"endpoint user, not a URL", s3YAML(t, "endpoint", "'http://"+testAccessKey+":pass@s3 example.com'"), no, "storage.s3.endpoint: not a URL"},
		{"endpoint user, no host", s3YAML(t, "endpoint", "'https://"+testAccessKey+"@'"), no, "storage.s3.endpoint"},
		{"no bucket", s3YAML(t, "bucket", "-"), no, "storage.s3.bucket: required with storage.backend s3"},
		{"bucket short", s3YAML(t, "bucket", "ab"), no, `storage.s3.bucket: "ab" has 2 characters: want 3 to 63`},
		{"bucket long", s3YAML(t, "bucket", strings.Repeat("a", 64)), no, "has 64 characters"},
		{"bucket upper case", s3YAML(t, "bucket", "Mirrord"), no, `storage.s3.bucket: "Mirrord" has 'M': use only lowercase letters`},
		{"bucket underscore", s3YAML(t, "bucket", "my_bucket"), no, `has '_'`},
		{"bucket starts with a dash", s3YAML(t, "bucket", "-mirrord"), no, "must start and end with a lowercase letter or digit"},
		{"bucket ends with a dot", s3YAML(t, "bucket", "mirrord."), no, "must start and end with a lowercase letter or digit"},
		{"bucket two dots", s3YAML(t, "bucket", "a..b"), no, "must not have two dots in a row"},
		{"bucket an IP", s3YAML(t, "bucket", "192.168.1.1"), no, "must not look like an IP address"},
		{"prefix leading slash", s3YAML(t, "prefix", "/mirrord"), no, `storage.s3.prefix: "/mirrord" must be relative`},
		{"prefix trailing slash", s3YAML(t, "prefix", "mirrord/"), no, `storage.s3.prefix: "mirrord/" has an empty segment`},
		{"prefix double slash", s3YAML(t, "prefix", "a//b"), no, "has an empty segment"},
		{"prefix dot dot", s3YAML(t, "prefix", "a/../b"), no, `storage.s3.prefix: "a/../b" has a ".." segment`},
		{"prefix dot", s3YAML(t, "prefix", "./a"), no, `has a "." segment`},
		{"prefix backslash", s3YAML(t, "prefix", `'a\b'`), no, `holds a control character or '\'`},
		{"prefix control", s3YAML(t, "prefix", `"a\tb"`), no, "holds a control character"},
		{"no access key", s3YAML(t, "access_key_file", "-"), no, "storage.s3.access_key_file: required with storage.backend s3: a file holding the key, or the key itself in " + EnvS3AccessKey},
		{"no secret key", s3YAML(t, "secret_key_file", "-"), no, "storage.s3.secret_key_file: required with storage.backend s3: a file holding the key, or the key itself in " + EnvS3SecretKey},
		{"key file missing", s3YAML(t, "access_key_file", none), no, "storage.s3.access_key_file: open " + none + ": no such file or directory"},
		{"key file a folder", s3YAML(t, "secret_key_file", dir), no, "storage.s3.secret_key_file: " + dir + " is not a regular file"},
		{"key file readable by all", s3YAML(t, "secret_key_file", worldReadable(t)), no, "has mode 0644: every user can read it; chmod o-r it"},
		{"key file empty", s3YAML(t, "access_key_file", empty), no, "storage.s3.access_key_file: " + empty + " is empty"},
		{"key file a line break", s3YAML(t, "secret_key_file", newline), no, "storage.s3.secret_key_file: " + newline + " is empty"},
		{"key file two lines", s3YAML(t, "access_key_file", twoLines), no, "storage.s3.access_key_file: " + twoLines + " holds more than one line"},
		{"key file of aws", s3YAML(t, "secret_key_file", awsCredentials), no, "storage.s3.secret_key_file: " + awsCredentials + " holds more than one line"},
		{"key file blank", s3YAML(t, "access_key_file", blank), no, "storage.s3.access_key_file: " + blank + " holds a blank, control or non-ASCII character"},
		{"key file large", s3YAML(t, "secret_key_file", large), no, "storage.s3.secret_key_file: " + large + " is larger than 4096 bytes"},
		{"env key blank", s3YAML(t), [2]string{EnvS3AccessKey, testAccessKey + " "},
			"storage.s3.access_key: holds a blank, control or non-ASCII character: want the key alone (env " + EnvS3AccessKey + ")"},
		{"env key two lines", s3YAML(t), [2]string{EnvS3SecretKey, testAccessKey + "\n" + testSecretKey},
			"storage.s3.secret_key: holds more than one line: want the key alone (env " + EnvS3SecretKey + ")"},
		{"key in the config", s3YAML(t, "access_key", testAccessKey), no,
			"storage.s3.access_key: unknown key: the config holds no key, only storage.s3.access_key_file"},
		{"secret in the config", s3YAML(t, "secret_key", "'"+testSecretKey+"'"), no, "or set " + EnvS3SecretKey},
		{"redirect expiry 0", s3YAML(t, "redirect", "true", "redirect_expiry", "0s"), no,
			"storage.s3.redirect_expiry: 0s must be between 1s and 7d (the longest a presigned S3 URL lives)"},
		{"redirect expiry short", s3YAML(t, "redirect", "true", "redirect_expiry", "999ms"), no, "storage.s3.redirect_expiry: 999ms must be between 1s and 7d"},
		{"redirect expiry long", s3YAML(t, "redirect", "true", "redirect_expiry", "7d1s"), no, "storage.s3.redirect_expiry: 168h0m1s must be between 1s and 7d"},
		{"redirect expiry unitless", s3YAML(t, "redirect", "true", "redirect_expiry", "900"), no, "storage.s3.redirect_expiry: 900 has no unit"},
		{"cache size negative", s3YAML(t, "cache_size", "-1"), no, "storage.s3.cache_size: -1 must not be negative"},
		{"cache size not a size", s3YAML(t, "cache_size", "lots"), no, `storage.s3.cache_size: invalid size "lots"`},
		{"path style not a bool", s3YAML(t, "path_style", "sometimes"), no, `storage.s3.path_style: "sometimes" is not true or false`},
	}
}

func TestS3Rejects(t *testing.T) {
	for _, tt := range s3Rejects(t) {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env[0] != "" {
				t.Setenv(tt.env[0], tt.env[1])
			}
			_, err := load(t, tt.yaml)
			if err == nil {
				t.Fatalf("Load(%q) = nil error, want %q", tt.yaml, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error = %v\nwant it to contain %q", err, tt.want)
			}
			noSecret(t, "Load error", err.Error())
		})
	}
}

// TestS3AllProblemsAtOnce: the s3 problems come with the others, each once.
func TestS3AllProblemsAtOnce(t *testing.T) {
	_, err := load(t, s3YAML(t, "bucket", "X", "access_key_file", "/nonexistent/key", "secret_key_file", "-")+"cache: {keep_versions: 0}\n")
	if err == nil {
		t.Fatal("Load = nil error")
	}
	for _, want := range []string{"storage.s3.bucket:", "storage.s3.access_key_file:", "storage.s3.secret_key_file:", "cache.keep_versions:"} {
		if n := strings.Count(err.Error(), want); n != 1 {
			t.Errorf("Load error has %q %d times, want once:\n%v", want, n, err)
		}
	}
}

// TestS3SecretsNotShown: the effective config, as `mirrord config` prints
// it (YAML of Redacted), as --sources prints it (WriteSources), as fmt and
// slog print it, shows no key; fmt shows <redacted> in its place.
func TestS3SecretsNotShown(t *testing.T) {
	t.Setenv(EnvS3SecretKey, testSecretKey) // one key from the env, one from a file
	c, err := load(t, s3YAML(t, "secret_key_file", "-"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.S3.AccessKey != testAccessKey || c.Storage.S3.SecretKey != testSecretKey {
		t.Fatalf("keys = %q, %q; want both loaded", c.Storage.S3.AccessKey, c.Storage.S3.SecretKey)
	}

	out, err := c.Redacted().YAML()
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "Redacted().YAML()", string(out))
	if !strings.Contains(string(out), "bucket: mirrord") || strings.Contains(string(out), "access_key:") || strings.Contains(string(out), "secret_key:") {
		t.Errorf("YAML lacks the s3 section, or has a key field:\n%s", out)
	}
	// Even without Redacted: the fields are not encoded at all.
	out, err = c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "YAML()", string(out))

	got, text := sourcesOf(t, c)
	noSecret(t, "WriteSources", text)
	if got["storage.backend"] != [2]string{"file", "s3"} || got["storage.s3.bucket"] != [2]string{"file", "mirrord"} ||
		got["storage.s3.redirect_expiry"] != [2]string{"default", "15m0s"} {
		t.Errorf("WriteSources storage lines: backend %q, bucket %q, redirect_expiry %q", got["storage.backend"], got["storage.s3.bucket"], got["storage.s3.redirect_expiry"])
	}
	for k := range got {
		if strings.HasSuffix(k, "access_key") || strings.HasSuffix(k, "secret_key") {
			t.Errorf("WriteSources has a line %s: %q", k, got[k])
		}
	}

	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		noSecret(t, "fmt "+verb+" of Config", fmt.Sprintf(verb, c))
		noSecret(t, "fmt "+verb+" of S3", fmt.Sprintf(verb, &c.Storage.S3))
	}
	if s := fmt.Sprintf("%+v", c.Storage); !strings.Contains(s, "AccessKey:<redacted> SecretKey:<redacted>") || !strings.Contains(s, "Bucket:mirrord") {
		t.Errorf("%%+v of Storage = %s; want the fields, the keys <redacted>", s)
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "storage", c.Storage, "s3", c.Storage.S3, "config", c)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "storage", c.Storage, "s3", c.Storage.S3, "config", c)
	noSecret(t, "slog", logs.String())
	if !strings.Contains(logs.String(), "mirrord") {
		t.Errorf("slog shows no s3 section:\n%s", logs.String())
	}
	if c.Storage.S3.AccessKey != testAccessKey {
		t.Error("printing changed the config's key")
	}
}

// TestExampleS3Loads: the example's commented storage.s3 block, taken in
// as it is, loads (the keys from the environment, which win over the key
// files it names).
func TestExampleS3Loads(t *testing.T) {
	src, err := os.ReadFile("mirrord.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	start := -1
	for i, l := range lines {
		if l == "  # s3:" {
			start = i
		}
	}
	if start < 0 {
		t.Fatal(`example has no "  # s3:" line`)
	}
	block := []string{"storage:", "  backend: s3"}
	for _, l := range lines[start:] {
		rest, ok := strings.CutPrefix(l, "  # ")
		if !ok || (rest != "s3:" && !strings.HasPrefix(rest, "  ")) {
			break
		}
		block = append(block, "  "+rest)
	}
	if len(block) < 12 {
		t.Fatalf("example's s3 block has %d lines, want every key:\n%s", len(block)-3, strings.Join(block, "\n"))
	}
	t.Setenv(EnvS3AccessKey, testAccessKey)
	t.Setenv(EnvS3SecretKey, testSecretKey)
	c, err := load(t, "data_dir: "+t.TempDir()+"\n"+strings.Join(block, "\n")+"\n")
	if err != nil {
		t.Fatalf("example's s3 block:\n%s\n%v", strings.Join(block, "\n"), err)
	}
	s := c.Storage.S3
	if s.Endpoint == "" || s.Bucket == "" || s.AccessKeyFile == "" || s.SecretKeyFile == "" || s.RedirectExpiry != 15*time.Minute {
		t.Errorf("example's s3 block = %+v", s)
	}
}

// worldReadable is a key file every user may read.
func worldReadable(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(testSecretKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o644) // whatever the umask
	return p
}
