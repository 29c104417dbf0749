package upstream

import (
	"io"
	"net/http"
	"testing"

	"github.com/mirrord/mirrord/internal/faultserver"
)

const benchSize = 8 << 20

func benchServer(b *testing.B) *faultserver.Server {
	b.Helper()
	return faultserver.NewTest(b, writeTreeB(b, b.TempDir()))
}

// writeTreeB lays one benchSize package under root.
func writeTreeB(b *testing.B, root string) string {
	b.Helper()
	if err := writeFile(root, pkgPath, patterned(benchSize, 5)); err != nil {
		b.Fatal(err)
	}
	return root
}

// BenchmarkFetch reads a package through Fetch (watchdog, counting,
// metrics) from a loopback mirror.
func BenchmarkFetch(b *testing.B) {
	srv := benchServer(b)
	c, err := NewClient(testOptions(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	set, err := c.Mirrors([]string{template(srv)})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	for b.Loop() {
		resp, err := set.Fetch(b.Context(), pkgReq())
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != benchSize {
			b.Fatalf("read %d bytes, %v", n, err)
		}
		resp.Body.Close()
	}
}

// BenchmarkPlainHTTP is the baseline: net/http alone, same server.
func BenchmarkPlainHTTP(b *testing.B) {
	srv := benchServer(b)
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.SetBytes(benchSize)
	for b.Loop() {
		resp, err := client.Get(srv.URL() + pkgPath)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != benchSize {
			b.Fatalf("read %d bytes, %v", n, err)
		}
		resp.Body.Close()
	}
}
