package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/mirrord/mirrord/config"
)

// auth decides who may write. Only token hashes are known; a presented
// token is hashed and compared with every configured hash in constant
// time, so neither the comparison nor the loop tells how close it came.
type auth struct {
	tokens []token
}

type token struct {
	name  string
	hash  []byte
	repos []string // "distro/repo"
}

func newAuth(cfg *config.Config) *auth {
	a := &auth{}
	for _, t := range cfg.API.Tokens {
		h, _ := hex.DecodeString(strings.ToLower(t.SHA256)) // validated by config
		a.tokens = append(a.tokens, token{name: t.Name, hash: h, repos: t.Repos})
	}
	return a
}

// allow checks that r may write to every one of repos ("distro/repo"):
// 401 without a known token, 403 when the token does not name a repo.
// With no tokens configured, only loopback clients may write.
func (a *auth) allow(r *http.Request, repos ...string) error {
	if len(a.tokens) == 0 {
		if !loopback(r.RemoteAddr) {
			return errorf(http.StatusForbidden, "writes are accepted from loopback clients only while api.tokens is empty")
		}
		return nil
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || bearer == "" {
		return errorf(http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer TOKEN)")
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(bearer)))
	var found *token
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].hash) == 1 {
			found = &a.tokens[i]
		}
	}
	if found == nil {
		return errorf(http.StatusUnauthorized, "unknown token")
	}
	for _, repo := range repos {
		if !slices.Contains(found.repos, repo) {
			return errorf(http.StatusForbidden, "token "+found.name+" may not write to "+repo)
		}
	}
	return nil
}

func loopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
