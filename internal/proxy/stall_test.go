package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// dialSmall connects with a small receive buffer.
func dialSmall(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*net.TCPConn)
	tc.SetReadBuffer(16 << 10)
	t.Cleanup(func() { tc.Close() })
	return tc
}

// bodyServer runs handler behind limitBodyStall with a short stall.
func bodyServer(t *testing.T, stall time.Duration, handler http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler(w, limitBodyStall(w, r, stall))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// An upload that stops sending fails after the stall; one that trickles
// within it is read whole (regression test, issue 7).
func TestBodyStall(t *testing.T) {
	read := make(chan error, 4)
	addr := bodyServer(t, 300*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err == nil && len(b) != 40 {
			err = fmt.Errorf("read %d bytes", len(b))
		}
		read <- err
	})

	t.Run("stopped", func(t *testing.T) {
		c := dialSmall(t, addr)
		fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n0123456789")
		select {
		case err := <-read:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("stalled body: read error %v, want a deadline error", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("stalled body: handler still reading after 10s")
		}
	})
	t.Run("trickle", func(t *testing.T) {
		c := dialSmall(t, addr)
		fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
		for range 8 { // 8 × 100 ms: longer than the stall in all
			time.Sleep(100 * time.Millisecond)
			c.Write([]byte("01234"))
		}
		if err := <-read; err != nil {
			t.Fatalf("trickled body: %v", err)
		}
	})
}

// A request that announces a body it never sends, to a handler that does
// not read it, must not pin the connection: net/http's discard of the
// unread body is bounded by the stall too.
func TestBodyStallUnreadBody(t *testing.T) {
	addr := bodyServer(t, 300*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	c := dialSmall(t, addr)
	fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("connection still open 10s after a body that never came: %v (read %q)", err, rest)
	}
	if !strings.Contains(string(rest), "ok") {
		t.Logf("response: %q", rest)
	}
}
