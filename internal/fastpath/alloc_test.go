//go:build linux && !race

package fastpath

import (
	"bytes"
	"io"
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
	req := []byte("GET /archlinux/core/os/x86_64/core.db HTTP/1.1\r\nHost: mirror\r\nUser-Agent: pacman/6.0.2\r\n" +
		"If-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n")
	c, n := smallHits(t, req)
	buf := make([]byte, n)
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
	if !bytes.HasSuffix(buf[:n], smallBody) {
		t.Fatalf("last response %q", buf[:n])
	}
	// A little slack for what the runtime and the test framework
	// allocate meanwhile: one allocation per hit would be 5000.
	if allocs := after.Mallocs - before.Mallocs; allocs > hits/100 {
		t.Errorf("%d hits: %d allocations in the process, want at most %d", hits, allocs, hits/100)
	}
}
