package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smallBufListener shrinks the kernel's send buffer of every accepted
// connection, so that a client that does not read blocks the server's
// writes after a few KiB instead of megabytes.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// stallServer serves body at /file (by sendfile from a file) and /mem
// (one Write of a byte slice) through StallConn. Every handler's end
// is reported on done with its write error.
func stallServer(t *testing.T, body []byte, stall time.Duration) (addr string, done <-chan error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 16)
	mux := http.NewServeMux()
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			ch <- err
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, err = io.Copy(w, f)
		ch <- err
	})
	mux.HandleFunc("/mem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, err := w.Write(body)
		ch <- err
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(stallListener{smallBufListener{ln}, stall})
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), ch
}

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

// A client that never reads is cut after the stall: the handler returns
// with an error instead of blocking forever (regression test, issue 7).
func TestStallConnCutsNonReader(t *testing.T) {
	body := make([]byte, 8<<20)
	addr, done := stallServer(t, body, 300*time.Millisecond)
	for _, path := range []string{"/file", "/mem"} {
		t.Run(path, func(t *testing.T) {
			c := dialSmall(t, addr)
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("GET %s to a client that never reads: handler ended without error", path)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("GET %s to a client that never reads: handler still blocked after 10s", path)
			}
		})
	}
}

// A slow client that pauses for less than the stall each time gets every
// byte, in order, by sendfile and by Write alike.
func TestStallConnSlowReaderGetsAll(t *testing.T) {
	body := make([]byte, 1<<20)
	rand.Read(body)
	addr, done := stallServer(t, body, 300*time.Millisecond)
	for _, path := range []string{"/file", "/mem"} {
		t.Run(path, func(t *testing.T) {
			c := dialSmall(t, addr)
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
			br := bufio.NewReaderSize(c, 4<<10)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			buf := make([]byte, 32<<10)
			for got.Len() < len(body) {
				time.Sleep(40 * time.Millisecond) // a slow link, not a dead one
				n, err := resp.Body.Read(buf)
				got.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if !bytes.Equal(got.Bytes(), body) {
				t.Fatalf("GET %s slowly = %d bytes, equal %v; want the %d bytes intact", path, got.Len(), bytes.Equal(got.Bytes(), body), len(body))
			}
			if err := <-done; err != nil {
				t.Fatalf("GET %s slowly: handler error %v", path, err)
			}
		})
	}
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

// stallListener wraps each accepted connection with StallConn.
type stallListener struct {
	net.Listener
	stall time.Duration
}

func (l stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return StallConn(c, l.stall), nil
}
