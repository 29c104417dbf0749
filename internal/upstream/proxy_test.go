package upstream

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/internal/faultserver"
)

func newClient(t *testing.T, opts Options) *Client {
	t.Helper()
	c, err := NewClient(opts, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// A set built with a proxy sends every request, the retries, the failover
// and the resume included, through it; a set without one does not.
// Health and metrics stay with the mirror, never the proxy.
func TestMirrorsViaProxy(t *testing.T) {
	srv := startMirrors(t, 2)
	proxy := faultserver.NewProxy(t)
	pu, err := url.Parse(proxy.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.Retries = 1
	c := newClient(t, opts)
	via, err := c.MirrorsVia(pu, []string{template(srv[0]), template(srv[1])})
	if err != nil {
		t.Fatal(err)
	}
	// The first mirror answers 503 (then the retry cuts the body), so the
	// package comes from the second mirror with a Range request.
	srv[0].SetFault(pkgPath, faultserver.Fault{Status: http.StatusServiceUnavailable, Times: 1,
		Then: &faultserver.Fault{ResetAfter: 1000}})
	resp, got, err := fetchAll(t, via, pkgReq())
	if err != nil {
		t.Fatalf("Fetch through the proxy: %v", err)
	}
	sameBytes(t, got, pkgData)
	if resp.Mirror != label(srv[0]) && resp.Mirror != label(srv[1]) {
		t.Errorf("Response.Mirror = %q, want a mirror's host:port, not the proxy's", resp.Mirror)
	}
	sent := srv[0].Total() + srv[1].Total()
	forwarded := proxy.Log()
	if sent < 3 || len(forwarded) != sent {
		t.Errorf("mirrors saw %d requests, the proxy forwarded %d (%q); want every one (at least 3) through the proxy", sent, len(forwarded), forwarded)
	}
	for _, u := range forwarded {
		if !strings.HasSuffix(u, pkgPath) {
			t.Errorf("proxy forwarded %s, want only %s", u, pkgPath)
		}
	}
	if ua := proxy.UserAgents(); slices.ContainsFunc(ua, func(s string) bool { return s != "mirrord/test" }) {
		t.Errorf("User-Agents through the proxy = %q, want mirrord/test on each", ua)
	}
	for _, h := range via.Health() {
		if h.Mirror != label(srv[0]) && h.Mirror != label(srv[1]) {
			t.Errorf("Health names %q, want the mirrors", h.Mirror)
		}
	}

	// The same templates without a proxy go direct, on the same records.
	direct, err := c.Mirrors([]string{template(srv[0])})
	if err != nil {
		t.Fatal(err)
	}
	srv[0].ClearFaults()
	if _, _, err := fetchAll(t, direct, dbReq()); err != nil {
		t.Fatal(err)
	}
	if n := len(proxy.Log()); n != len(forwarded) {
		t.Errorf("a set without a proxy sent %d requests through it", n-len(forwarded))
	}
	if direct.mirrors[0] != via.mirrors[0] {
		t.Error("the proxied and the direct set have separate health records for one template")
	}
}

// The user agent goes out on every request: GET, HEAD, a retry, a resume.
func TestUserAgentOnEveryRequest(t *testing.T) {
	srv := startMirrors(t, 2)
	opts := testOptions()
	opts.Retries = 1
	opts.UserAgent = "mirrord/1.2.3 (+https://lan.example)"
	set, err := newClient(t, opts).Mirrors([]string{template(srv[0]), template(srv[1])})
	if err != nil {
		t.Fatal(err)
	}
	srv[0].SetFault(pkgPath, faultserver.Fault{Status: http.StatusBadGateway, Times: 1, Then: &faultserver.Fault{ResetAfter: 5000}})
	if _, got, err := fetchAll(t, set, pkgReq()); err != nil {
		t.Fatal(err)
	} else {
		sameBytes(t, got, pkgData)
	}
	if _, _, err := fetchAll(t, set, Request{Method: http.MethodHead, Repo: testRepo, Arch: testArch, File: dbName}); err != nil {
		t.Fatal(err)
	}
	log := append(srv[0].Log(), srv[1].Log()...)
	var methods, ranges int
	for _, e := range log {
		if ua := e.Header.Get("User-Agent"); ua != opts.UserAgent {
			t.Errorf("%s %s (Range %q) had User-Agent %q, want %q", e.Method, e.Path, e.Range, ua, opts.UserAgent)
		}
		if e.Method == http.MethodHead {
			methods++
		}
		if e.Range != "" {
			ranges++
		}
	}
	if len(log) < 4 || methods != 1 || ranges != 1 {
		t.Errorf("mirrors logged %d requests, %d HEAD, %d with Range; want a 502, its retry, a resume and a HEAD", len(log), methods, ranges)
	}
}

func TestSubsetAndTemplates(t *testing.T) {
	c := newClient(t, testOptions())
	pu, _ := url.Parse("http://proxy.example:3128")
	a, b, d := "https://a.example/$repo/os/$arch", "https://b.example/$repo/os/$arch/", "https://d.example/$arch/$repo"
	s, err := c.MirrorsVia(pu, []string{a, b, d})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Templates(), []string{a, strings.TrimSuffix(b, "/"), d}; !slices.Equal(got, want) {
		t.Errorf("Templates() = %q, want %q", got, want)
	}
	sub := s.Subset([]string{d, strings.TrimSuffix(b, "/")})
	if sub == nil || !slices.Equal(sub.Templates(), []string{strings.TrimSuffix(b, "/"), d}) || sub.proxy != pu {
		t.Fatalf("Subset(d, b) = %+v; want b then d (the set's order) through the set's proxy", sub)
	}
	if sub.mirrors[0] != s.mirrors[1] {
		t.Error("Subset made a new health record")
	}
	if s.Subset([]string{"https://other.example/$repo"}) != nil || s.Subset(nil) != nil {
		t.Error("Subset of no known template is not nil")
	}
}
