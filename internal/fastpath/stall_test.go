package fastpath

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Only a send after a wakeup is the client's progress; a first try after
// a deadline (a few bytes its kernel still takes) is not.
func TestStallClock(t *testing.T) {
	const stall = time.Hour
	var c stallClock
	c.start(time.Now().Add(-2 * stall)) // a write begun two stalls ago
	c.sent(4096)                        // its first burst, or a retry's trickle
	if _, ok := c.expired(stall); ok {
		t.Fatal("sends without a wakeup kept the write alive")
	}
	c.full()
	c.sent(0)
	if _, ok := c.expired(stall); ok {
		t.Fatal("a wakeup that sent nothing kept the write alive")
	}
	c.full()
	c.sent(1)
	d, ok := c.expired(stall)
	if !ok || time.Until(d) < stall-time.Minute {
		t.Fatalf("a send after a wakeup: expired = %v, %v; want about a stall from now", d, ok)
	}
	c.sent(1) // the retry's first try
	c.last = c.last.Add(-2 * stall)
	if _, ok := c.expired(stall); ok {
		t.Fatal("the retry's first try counted as progress")
	}
}

// stallListener shrinks the kernel's send buffer of every accepted
// connection, so that a client that does not read blocks the server's
// writes after a few KiB instead of megabytes, and wraps it in StallConn.
type stallListener struct {
	net.Listener
	stall time.Duration
}

func (l stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetWriteBuffer(16 << 10)
	return StallConn(c, l.stall), nil
}

// stallServer is net/http alone, each connection in StallConn, as mirrord
// serves with server.fast_path off. It serves body at /file (io.Copy
// from the file: ReadFrom) and /mem (one Write of a byte slice). Every
// handler's end is reported on done with its write error.
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
	go srv.Serve(stallListener{ln, stall})
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
// with an error instead of blocking forever, whether the body goes by
// sendfile (ReadFrom) or by Write.
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
