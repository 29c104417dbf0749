//go:build linux

package fastpath

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// TestBusyLoopYields: a loop that answers for longer than yieldAfter
// without waiting lets the kernel run another thread (see yieldAfter),
// and one that waits between requests does not.
func TestBusyLoopYields(t *testing.T) {
	req := []byte("GET /archlinux/core/os/x86_64/core.db HTTP/1.1\r\nHost: mirror\r\n\r\n")
	c, n := smallHits(t, req)
	buf := make([]byte, n)

	// Requests a millisecond apart: the loop waits before each.
	before := yields.Load()
	for range 50 {
		time.Sleep(time.Millisecond) // the gap is the workload, not a synchronisation
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if y := yields.Load() - before; y != 0 {
		t.Errorf("a loop that waited before every request yielded %d times", y)
	}

	// 5,000 requests pipelined: some milliseconds of answering in a row.
	const pipelined = 5000
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(bytes.Repeat(req, pipelined))
		wrote <- err
	}()
	all := make([]byte, pipelined*n)
	if _, err := io.ReadFull(c, all); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(all, smallBody) {
		t.Fatalf("last response %q", all[len(all)-n:])
	}
	if yields.Load() == before {
		t.Errorf("a loop that answered %d pipelined requests never yielded", pipelined)
	}
}
