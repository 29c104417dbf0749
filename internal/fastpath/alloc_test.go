//go:build linux && !race

package fastpath

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
)

// TestHitsDoNotAllocate: a kept-alive connection's hits cost the event
// loop no allocation, so that a busy server runs no GC cycle (at 200 000
// hits a second one allocation each was a cycle a second, and the p99 of
// the small rows of bench-proxy.sh). Hit here allocates nothing itself,
// and neither does the client: whatever the process allocates is the
// loop's.
func TestHitsDoNotAllocate(t *testing.T) {
	body := []byte("a small database")
	s := &Server{
		Hit: func(dst []byte, req *Request) ([]byte, Response, bool) {
			if req.Path != "/archlinux/core/os/x86_64/core.db" {
				return dst, Response{}, false
			}
			return append(dst, "Content-Length: 16\r\n"...), Response{Data: body}, true
		},
		Fallback: &http.Server{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Shutdown(t.Context())
		<-served
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /archlinux/core/os/x86_64/core.db HTTP/1.1\r\nHost: mirror\r\nUser-Agent: pacman/6.0.2\r\n" +
		"If-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n")
	buf := make([]byte, 4096)

	// The first response tells the length of every one: its head differs
	// from the next ones' in the Date's value only.
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+len(body) {
			break
		}
	}
	if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(buf[:n], body) {
		t.Fatalf("response %q", buf[:n])
	}
	hit := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	for range 200 { // the loop's buffers and interned paths settle
		hit()
	}
	const hits = 5000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range hits {
		hit()
	}
	runtime.ReadMemStats(&after)
	if !bytes.HasSuffix(buf[:n], body) {
		t.Fatalf("last response %q", buf[:n])
	}
	// A little slack for what the runtime and the test framework
	// allocate meanwhile: one allocation per hit would be 5000.
	if allocs := after.Mallocs - before.Mallocs; allocs > hits/100 {
		t.Errorf("%d hits: %d allocations in the process, want at most %d", hits, allocs, hits/100)
	}
}
