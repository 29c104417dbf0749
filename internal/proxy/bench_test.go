package proxy

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/fastpath"
	"github.com/mirrord/mirrord/internal/store"
)

// BenchmarkServeHit measures the handler's own cost for a cache hit of a
// 50 KB file, without the network: allocations here are per request.
func BenchmarkServeHit(b *testing.B) {
	dir := b.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	repo := filepath.Join(dir, "tree/archlinux/core/os/x86_64")
	os.MkdirAll(repo, 0o755)
	os.WriteFile(filepath.Join(repo, "hello-1.0-1-x86_64.pkg.tar.zst"), make([]byte, 50_000), 0o644)
	h, err := New(testCatalog(b, testConfig(dir), st, nil), st, Options{})
	if err != nil {
		b.Fatal(err)
	}
	g := Guard(h)
	req := httptest.NewRequest("GET", "/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst", nil)
	b.ReportAllocs()
	b.SetBytes(50_000)
	for b.Loop() {
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkServeHitTCP serves 50 KB hits over loopback keep-alive
// connections through a real http.Server, each connection in
// fastpath.StallConn as the daemon wires net/http's path (sendfile of the
// store's held descriptor, under the stall rule), so that a CPU profile
// shows the whole hit path.
func BenchmarkServeHitTCP(b *testing.B) {
	dir := b.TempDir()
	st, err := store.Open(dir, store.Options{MemorySize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	repo := filepath.Join(dir, "tree/archlinux/core/os/x86_64")
	os.MkdirAll(repo, 0o755)
	os.WriteFile(filepath.Join(repo, "hello-1.0-1-x86_64.pkg.tar.zst"), make([]byte, 50_000), 0o644)
	h, err := New(testCatalog(b, testConfig(dir), st, nil), st, Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := serveStd(b, Guard(h))
	defer srv.Close()
	url := srv.URL + "/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetBytes(50_000)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 64<<10)
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
			}
			resp.Body.Close()
		}
	})
}

// BenchmarkAppendHit measures the fast path's share of a hit in the
// handler: a 2.6 KB database from memory, plain and with a matching
// If-Modified-Since (304).
func BenchmarkAppendHit(b *testing.B) {
	dir := b.TempDir()
	st, err := store.Open(dir, store.Options{MemorySize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	mod := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	st.WriteFile("archlinux/core/os/x86_64/core.db", make([]byte, 2600), store.Meta{LastModified: mod, FetchedAt: time.Now()})
	h, err := New(testCatalog(b, testConfig(dir), st, nil), st, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ims  string
	}{{"200", ""}, {"304", mod.Format(http.TimeFormat)}} {
		b.Run(tc.name, func(b *testing.B) {
			req := &fastpath.Request{Path: "/archlinux/core/os/x86_64/core.db", IfModifiedSince: []byte(tc.ims)}
			dst := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				_, resp, ok := h.AppendHit(dst, req)
				if !ok || resp.NotModified != (tc.ims != "") {
					b.Fatalf("AppendHit = %v, %+v", ok, resp)
				}
			}
		})
	}
}
