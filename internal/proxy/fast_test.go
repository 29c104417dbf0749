package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/fastpath"
	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

// serveFast serves h as mirrord does (cmd/mirrord newServer): the fast
// path in front of net/http with the Guard, under fastpath.WriteStall,
// which also puts every connection net/http gets in fastpath.StallConn.
// The returned server's URL is set; it is not Started.
func serveFast(t testing.TB, h *Handler, wrap ...func(http.Handler) http.Handler) *httptest.Server {
	srv, _ := serveFastStop(t, h, wrap...)
	return srv
}

// serveFastStop is serveFast, and a stop that shuts the server down and
// waits for every handler to return.
func serveFastStop(t testing.TB, h *Handler, wrap ...func(http.Handler) http.Handler) (*httptest.Server, func()) {
	t.Helper()
	var next http.Handler = Guard(h)
	for _, w := range wrap {
		next = w(next)
	}
	srv := httptest.NewUnstartedServer(next)
	fs := &fastpath.Server{Hit: h.AppendHit, Fallback: srv.Config, WriteStall: fastpath.WriteStall}
	srv.URL = "http://" + srv.Listener.Addr().String()
	go fs.Serve(srv.Listener)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			fs.Shutdown(ctx)
		})
	}
	t.Cleanup(stop)
	return srv, stop
}

// serveStd serves h as mirrord does with server.fast_path off: net/http
// alone, every connection in fastpath.StallConn. It is Started.
func serveStd(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = stallListener{srv.Listener}
	srv.Start()
	return srv
}

type stallListener struct{ net.Listener }

func (l stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return fastpath.StallConn(c, fastpath.WriteStall), nil
}

// The fast path answers a hit as net/http does: same status, same header
// fields (but Date), same body, counted the same; for small files held in
// memory, larger ones held open and files placed by hand; packages, a
// proxy repo's fresh databases, a mirror's and a hosted repo's (a link);
// plain, and with If-Modified-Since and If-None-Match (304 or 200). A
// stale proxy database and a date in a form only net/http reads go to
// net/http, and still look the same.
func TestFastPathMatchesServeHTTP(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{MemorySize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	up := faultserver.NewTest(t, t.TempDir()) // never asked but for the stale db, which it lacks
	cfg := &config.Config{
		DataDir: dir,
		Cache:   config.Cache{DBMaxAge: time.Hour},
		Distros: map[string]config.Distro{
			"archlinux": {Layout: "$repo/os/$arch", Arch: []string{"x86_64"}, Upstreams: []string{"http://" + up.Addr() + "/$repo/os/$arch"},
				Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}, "extra": {Mode: config.ModeMirror}, "custom": {Mode: config.ModeHosted}}},
		},
	}
	mod := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	files := map[string]int{} // URL path -> size
	put := func(rel string, size int, fetched time.Time) {
		if err := st.WriteFile("archlinux/"+rel, []byte(strings.Repeat("p", size)), store.Meta{LastModified: mod, FetchedAt: fetched}); err != nil {
			t.Fatal(err)
		}
		files["/archlinux/"+rel] = size
	}
	put("core/os/x86_64/small-1-1-x86_64.pkg.tar.zst", 100, time.Now())
	put("core/os/x86_64/mid-1-1-x86_64.pkg.tar.zst", 50<<10, time.Now())
	put("core/os/x86_64/big-1-1-x86_64.pkg.tar.zst", 3<<20, time.Now())
	put("core/os/x86_64/core.db", 2600, time.Now())                      // a proxy db, fresh
	put("core/os/x86_64/core.files", 30<<10, time.Now())                 // from a file, fresh
	put("core/os/x86_64/core.db.sig", 310, time.Now().Add(-2*time.Hour)) // stale: revalidated by net/http
	put("extra/os/x86_64/extra.db", 2<<20, time.Time{})                  // a mirror's db
	put("custom/os/x86_64/custom.db.tar.gz", 1200, time.Time{})
	if err := st.Symlink("custom.db.tar.gz", "archlinux/custom/os/x86_64/custom.db"); err != nil { // a hosted repo's db
		t.Fatal(err)
	}
	files["/archlinux/custom/os/x86_64/custom.db"] = 1200
	// A package placed by hand: its mtime is its Last-Modified.
	hand := filepath.Join(dir, "tree/archlinux/core/os/x86_64/hand-1-1-x86_64.pkg.tar.zst")
	os.WriteFile(hand, []byte("hand"), 0o644)
	os.Chtimes(hand, mod, mod.Add(300*time.Millisecond))
	files["/archlinux/core/os/x86_64/hand-1-1-x86_64.pkg.tar.zst"] = 4

	reg := prometheus.NewRegistry()
	up2, err := upstream.NewClient(upstream.Options{Retries: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(testCatalog(t, cfg, st, up2), st, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	slow := serveStd(t, Guard(h))
	defer slow.Close()
	var fallback atomic.Int64 // requests the fast path left to net/http
	fast, stopFast := serveFastStop(t, h, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fallback.Add(1)
			next.ServeHTTP(w, r)
		})
	})
	at := mod.Format(http.TimeFormat)
	conds := []struct {
		name     string
		hdr      []string // name, value
		want     int
		fastPath bool // answered without net/http (for a fresh file)
	}{
		{"plain", nil, 200, true},
		{"If-Modified-Since at", []string{"If-Modified-Since", at}, 304, true},
		{"If-Modified-Since later", []string{"If-Modified-Since", mod.Add(time.Hour).Format(http.TimeFormat)}, 304, true},
		{"If-Modified-Since earlier", []string{"If-Modified-Since", mod.Add(-time.Second).Format(http.TimeFormat)}, 200, true},
		{"If-Modified-Since RFC 850", []string{"If-Modified-Since", mod.Format(time.RFC850)}, 304, false},
		{"If-None-Match *", []string{"If-None-Match", "*"}, 304, true},
		{"If-None-Match a tag", []string{"If-None-Match", `"abc"`, "If-Modified-Since", at}, 200, true},
	}
	// counts is what the metrics say of each repo: hits, body bytes.
	counts := func() map[string][2]float64 {
		m := map[string][2]float64{}
		for _, repo := range []string{"archlinux/core", "archlinux/extra", "archlinux/custom"} {
			m[repo] = [2]float64{testutil.ToFloat64(h.metrics.requests.WithLabelValues(repo, resultHit)), testutil.ToFloat64(h.metrics.bytes.WithLabelValues(repo))}
		}
		return m
	}
	type key struct{ path, cond string }
	heads := [2]map[key]http.Header{{}, {}}
	var delta [2]map[string][2]float64
	for i, base := range []string{slow.URL, fast.URL} {
		before := counts()
		client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
		for path, size := range files {
			stale := strings.HasSuffix(path, ".sig")
			for _, c := range conds {
				handedBefore := fallback.Load()
				for range 2 { // the first use may read the file in; the second is a hot hit
					req, _ := http.NewRequest("GET", base+path, nil)
					for j := 0; j < len(c.hdr); j += 2 {
						req.Header.Set(c.hdr[j], c.hdr[j+1])
					}
					resp, err := client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					want, wantLen := c.want, size
					if want == 304 {
						wantLen = 0
					}
					if stale {
						want, wantLen = resp.StatusCode, len(body) // whatever net/http makes of it: compared below
					}
					if resp.StatusCode != want || len(body) != wantLen {
						t.Fatalf("GET %s%s %s = %d, %d bytes, want %d, %d", base, path, c.name, resp.StatusCode, len(body), want, wantLen)
					}
					resp.Header["Status"] = []string{resp.Status}
					heads[i][key{path, c.name}] = resp.Header
				}
				if i == 1 {
					handed := fallback.Load() - handedBefore
					if wantHanded := map[bool]int64{true: 0, false: 2}[c.fastPath && !stale]; handed != wantHanded {
						t.Errorf("%s %s: %d of 2 requests went to net/http, want %d", path, c.name, handed, wantHanded)
					}
				}
			}
		}
		client.CloseIdleConnections()
		// Handlers count after they respond: wait for them to return.
		if i == 0 {
			slow.Close()
		} else {
			stopFast()
		}
		after := counts()
		delta[i] = map[string][2]float64{}
		for repo, c := range after {
			delta[i][repo] = [2]float64{c[0] - before[repo][0], c[1] - before[repo][1]}
		}
	}
	for k, slowHead := range heads[0] {
		fastHead := heads[1][k]
		if fastHead.Get("Date") == "" {
			t.Errorf("%s %s: fast path sent no Date", k.path, k.cond)
		}
		for _, hd := range []http.Header{slowHead, fastHead} {
			hd.Del("Date")
			hd.Del("Age") // a stale copy's age, which may tick between the two
		}
		if fmt.Sprint(slowHead) != fmt.Sprint(fastHead) {
			t.Errorf("%s %s: headers differ:\n net/http  %v\n fast path %v", k.path, k.cond, slowHead, fastHead)
		}
	}
	if fmt.Sprint(delta[0]) != fmt.Sprint(delta[1]) {
		t.Errorf("hits and bytes counted differ:\n net/http  %v\n fast path %v", delta[0], delta[1])
	}
	for _, repo := range []string{"archlinux/core", "archlinux/extra", "archlinux/custom"} {
		// Each request was made on both servers, so every count is even
		// and the fast path's half is the net/http half.
		hits := testutil.ToFloat64(h.metrics.requests.WithLabelValues(repo, resultHit))
		n := 0
		for path := range files {
			if strings.HasPrefix(path, "/"+repo+"/") && !strings.HasSuffix(path, ".sig") {
				n++
			}
		}
		if want := float64(2 * 2 * len(conds) * n); hits != want { // two servers, two rounds
			t.Errorf("%s: hits counted = %v, want %v", repo, hits, want)
		}
	}
}
