package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mirrord/mirrord/internal/fastpath"
	"github.com/mirrord/mirrord/internal/store"
)

// serveFast serves h as mirrord does: the fast path in front of net/http
// with the Guard. The returned server's URL is set; it is not Started.
func serveFast(t testing.TB, h *Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(Guard(h))
	fs := &fastpath.Server{Hit: h.AppendHit, Fallback: srv.Config, WriteStall: WriteStall}
	srv.URL = "http://" + srv.Listener.Addr().String()
	go fs.Serve(srv.Listener)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fs.Shutdown(ctx)
	})
	return srv
}

// The fast path answers a hit as net/http does: same status, same header
// fields (but Date), same body, counted the same; for small files held in
// memory, larger ones held open and files placed by hand.
func TestFastPathMatchesServeHTTP(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{MemorySize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	repo := filepath.Join(dir, "tree/archlinux/core/os/x86_64")
	os.MkdirAll(repo, 0o755)
	files := map[string]int{"small-1-1-x86_64.pkg.tar.zst": 100, "mid-1-1-x86_64.pkg.tar.zst": 50 << 10, "big-1-1-x86_64.pkg.tar.zst": 3 << 20}
	for name, size := range files {
		os.WriteFile(filepath.Join(repo, name), []byte(strings.Repeat("p", size)), 0o644)
	}
	reg := prometheus.NewRegistry()
	h, err := New(testConfig(dir), st, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	slow := httptest.NewServer(Guard(h))
	defer slow.Close()
	fast := serveFast(t, h)
	for name, size := range files {
		path := "/archlinux/core/os/x86_64/" + name
		var heads [2]http.Header
		for i, base := range []string{slow.URL, fast.URL} {
			for range 2 { // the first use may read the file in; the second is a hot hit
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || len(body) != size {
					t.Fatalf("GET %s%s = %d, %d bytes, want 200, %d", base, path, resp.StatusCode, len(body), size)
				}
				heads[i] = resp.Header
			}
		}
		if heads[1].Get("Date") == "" {
			t.Errorf("%s: fast path sent no Date", name)
		}
		heads[0].Del("Date")
		heads[1].Del("Date")
		if fmt.Sprint(heads[0]) != fmt.Sprint(heads[1]) {
			t.Errorf("%s: headers differ:\n net/http  %v\n fast path %v", name, heads[0], heads[1])
		}
	}
	if got, want := testutil.ToFloat64(h.metrics.requests.WithLabelValues("archlinux/core", resultHit)), float64(4*len(files)); got != want {
		t.Errorf("hits counted = %v, want %v", got, want)
	}
}
