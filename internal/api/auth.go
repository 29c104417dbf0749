package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/mirrord/mirrord/config"
)

// auth decides who may write. Every write needs a bearer token in the
// Authorization header; there is no exemption for loopback clients (a
// reverse proxy on the same host, or a web page the operator opens,
// would inherit it). Only token hashes are known; a presented token is
// hashed and compared with every known hash in constant time, so neither
// the comparison nor the loop tells how close it came.
type auth struct {
	tokens []token
}

type token struct {
	name  string
	hash  []byte
	repos []string // "distro/repo"
	all   bool     // the admin token: every repo
}

// newAuth knows the configured tokens or, with none configured, the admin
// token whose sha256 is admin (nil: no token at all, every write refused).
func newAuth(cfg *config.Config, admin []byte) *auth {
	a := &auth{}
	for _, t := range cfg.API.Tokens {
		h, _ := hex.DecodeString(strings.ToLower(t.SHA256)) // validated by config
		a.tokens = append(a.tokens, token{name: t.Name, hash: h, repos: t.Repos})
	}
	if len(a.tokens) == 0 && len(admin) == sha256.Size {
		a.tokens = append(a.tokens, token{name: "admin", hash: admin, all: true})
	}
	return a
}

// who authenticates a write: 403 for a cross-origin request (whatever
// its token), 401 without a known token. What the token may write is
// asked of it (may) once the target is known to exist.
func (a *auth) who(r *http.Request) (*token, error) {
	if err := sameOrigin(r); err != nil {
		return nil, err
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(bearer) == "" {
		return nil, errorf(http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer TOKEN); see `mirrord token`")
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(bearer)))
	var found *token
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].hash) == 1 {
			found = &a.tokens[i]
		}
	}
	if found == nil {
		return nil, errorf(http.StatusUnauthorized, "unknown token")
	}
	return found, nil
}

// may checks that t names every one of repos ("distro/repo"): 403 if not.
func (t *token) may(repos ...string) error {
	for _, repo := range repos {
		if !t.all && !slices.Contains(t.repos, repo) {
			return errorf(http.StatusForbidden, "token "+t.name+" may not write to "+repo)
		}
	}
	return nil
}

// sameOrigin refuses a request that a browser sent on behalf of another
// site: a page may POST to a loopback or LAN address without a CORS
// preflight (text/plain, multipart), and a token could ride along on
// nothing but the page's guess. Clients other than browsers send no
// Origin. Behind a reverse proxy that rewrites Host, browsers cannot
// write at all; the CLI and curl can.
func sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return errorf(http.StatusForbidden, "cross-origin write refused (Sec-Fetch-Site: "+site+")")
	}
	origin := r.Header.Values("Origin")
	if len(origin) == 0 {
		return nil
	}
	u, err := url.Parse(origin[0])
	if len(origin) > 1 || err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) ||
		(u.Scheme != "http" && u.Scheme != "https") {
		return errorf(http.StatusForbidden, fmt.Sprintf("cross-origin write refused: Origin %q is not this server (%s)", origin[0], r.Host))
	}
	return nil
}

// NewToken returns a fresh random bearer token: 256 bits from
// crypto/rand, URL-safe, with a prefix that secret scanners can match.
func NewToken() string {
	return "mirrord_" + base64.RawURLEncoding.EncodeToString(randBytes(32))
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return b
}

// TokenHash is the hex sha256 of a token, as api.tokens keeps it.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// AdminToken reads the admin token file at path, creating it with a new
// token (mode 0600) when it does not exist, and returns the token's
// sha256 only. A file that others may read, or that is not a regular
// file, is refused rather than trusted. The token is replaced only by
// deleting the file.
func AdminToken(path string) (sum []byte, created bool, err error) {
	data, err := readSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := writeSecret(path, []byte(NewToken()+"\n")); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, false, fmt.Errorf("admin token %s: %w", path, err)
		} else if err == nil {
			created = true
		}
		data, err = readSecret(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("admin token %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < 16 {
		return nil, false, fmt.Errorf("admin token %s: shorter than 16 characters; delete the file to make a new one", path)
	}
	s := sha256.Sum256([]byte(tok))
	return s[:], created, nil
}

// readSecret reads a small file that only its owner may read.
func readSecret(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscallNoFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("mode %04o lets others read it; chmod 600 it, or delete it to make a new token", perm)
	}
	buf := make([]byte, 4096)
	n, err := f.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// writeSecret creates path with data, mode 0600, durably and without
// replacing a file that appeared meanwhile (fs.ErrExist): written to a
// temp file, fsynced, hard-linked into place, the folder fsynced.
func writeSecret(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".admin-token-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// syscallNoFollow refuses a symlink as the token file: it could point
// anywhere the service may read.
const syscallNoFollow = syscall.O_NOFOLLOW
