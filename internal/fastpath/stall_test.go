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
			if got := readSlowly(t, c, len(body), 40*time.Millisecond); !bytes.Equal(got, body) {
				t.Fatalf("GET %s slowly = %d bytes, equal %v; want the %d bytes intact", path, len(got), bytes.Equal(got, body), len(body))
			}
			if err := <-done; err != nil {
				t.Fatalf("GET %s slowly: handler error %v", path, err)
			}
		})
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// StallConn's ReadFrom sends a regular file, alone or in an
// io.LimitedReader, by sendFile, from the file's offset, and leaves the
// offset and the limit where reading would; any other reader is copied.
func TestStallConnReadFrom(t *testing.T) {
	data := pattern(300 << 10)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		at       int64 // the file's offset before
		limit    int64 // an io.LimitedReader's N; 0: the file alone
		bytes    bool  // from a bytes.Reader instead
		want     int64 // bytes sent
		sendfile bool
	}{
		{"file", 0, 0, false, int64(len(data)), true},
		{"file at an offset", 1000, 0, false, int64(len(data)) - 1000, true},
		{"a range", 1000, 5000, false, 5000, true},
		{"a limit past the end", 1000, 1 << 40, false, int64(len(data)) - 1000, true},
		{"at the end", int64(len(data)), 0, false, 0, false}, // nothing to send
		{"bytes", 0, 0, true, int64(len(data)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Seek(tt.at, io.SeekStart)
			var r io.Reader = f
			if tt.bytes {
				r = bytes.NewReader(data)
			}
			var lr *io.LimitedReader
			if tt.limit > 0 {
				lr = &io.LimitedReader{R: f, N: tt.limit}
				r = lr
			}
			n, got, bySendfile, err := readFrom(t, r)
			if n != tt.want || err != nil {
				t.Fatalf("ReadFrom = %d, %v; want %d, nil", n, err, tt.want)
			}
			start := tt.at
			if tt.bytes {
				start = 0
			}
			if !bytes.Equal(got, data[start:start+tt.want]) {
				t.Errorf("received %d bytes, want %d bytes from %d", len(got), tt.want, start)
			}
			if bySendfile != tt.sendfile {
				t.Errorf("by sendFile: %v, want %v", bySendfile, tt.sendfile)
			}
			if off, _ := f.Seek(0, io.SeekCurrent); !tt.bytes && off != tt.at+tt.want {
				t.Errorf("file offset after = %d, want %d", off, tt.at+tt.want)
			}
			if lr != nil && lr.N != tt.limit-tt.want {
				t.Errorf("limit after = %d, want %d", lr.N, tt.limit-tt.want)
			}
		})
	}
}

// readFrom has a StallConn's ReadFrom send r on a fresh loopback
// connection and returns what it said, what the peer received, and
// whether it went by sendFile.
func readFrom(t *testing.T, r io.Reader) (n int64, got []byte, bySendfile bool, err error) {
	t.Helper()
	server, client := tcpPair(t)
	sc := StallConn(server, time.Minute)
	received := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		received <- b
	}()
	before := fileBodies.Load()
	n, err = sc.(io.ReaderFrom).ReadFrom(r)
	bySendfile = fileBodies.Load() > before
	server.Close()
	return n, <-received, bySendfile, err
}

// heldFile is a descriptor held open by its owner, read at offsets, as
// store.SharedFile is.
type heldFile struct{ f *os.File }

func (h heldFile) Fd() int                                 { return int(h.f.Fd()) }
func (h heldFile) ReadAt(p []byte, off int64) (int, error) { return h.f.ReadAt(p, off) }

// A section of a held descriptor (what proxy serves a hot file from on
// net/http's path) goes by sendFile from the section's position, which
// ReadFrom moves, and leaves the descriptor's own offset alone: other
// requests share it.
func TestStallConnReadFromSection(t *testing.T) {
	data := pattern(300 << 10)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tests := []struct {
		name           string
		base, size, at int64 // the section, and its position before
		limit          int64 // an io.LimitedReader's N; 0: none
		want           int64
	}{
		{"whole file", 0, int64(len(data)), 0, 0, int64(len(data))},
		{"after the first 512 bytes", 0, int64(len(data)), 512, 0, int64(len(data)) - 512},
		{"a range", 0, int64(len(data)), 1000, 5000, 5000},
		{"a section", 4096, 10000, 100, 0, 9900},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr := io.NewSectionReader(heldFile{f}, tt.base, tt.size)
			sr.Seek(tt.at, io.SeekStart)
			var r io.Reader = sr
			var lr *io.LimitedReader
			if tt.limit > 0 {
				lr = &io.LimitedReader{R: sr, N: tt.limit}
				r = lr
			}
			n, got, bySendfile, err := readFrom(t, r)
			if n != tt.want || err != nil {
				t.Fatalf("ReadFrom = %d, %v; want %d, nil", n, err, tt.want)
			}
			start := tt.base + tt.at
			if !bytes.Equal(got, data[start:start+tt.want]) {
				t.Errorf("received %d bytes, want %d bytes from %d", len(got), tt.want, start)
			}
			if !bySendfile {
				t.Error("not sent by sendFile")
			}
			if pos, _ := sr.Seek(0, io.SeekCurrent); pos != tt.at+tt.want {
				t.Errorf("section position after = %d, want %d", pos, tt.at+tt.want)
			}
			if off, _ := f.Seek(0, io.SeekCurrent); off != 0 {
				t.Errorf("the shared descriptor's offset moved to %d", off)
			}
			if lr != nil && lr.N != tt.limit-tt.want {
				t.Errorf("limit after = %d, want %d", lr.N, tt.limit-tt.want)
			}
		})
	}
}

// Files net/http serves on a connection the fast path handed over go out
// by sendFile, under the stall rule, a range as much as a whole file.
func TestFallbackSendfile(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.WriteStall = time.Minute })
	data := pattern(1 << 20)
	e.addFile("big", data)
	c := e.dial()
	br := bufio.NewReader(c)
	for _, tt := range []struct {
		name, extra string
		want        []byte
	}{
		{"whole", "", data},
		{"range", "Range: bytes=1000-300999\r\n", data[1000:301000]},
	} {
		before := fileBodies.Load()
		io.WriteString(c, get("/serve/big", tt.extra))
		resp, body := readResponse(t, br)
		if resp.Header.Get("X-Fallback") != "1" || body != string(tt.want) {
			t.Errorf("GET %s: fallback %q, %d bytes (intact %v), want net/http's, %d bytes",
				tt.name, resp.Header.Get("X-Fallback"), len(body), body == string(tt.want), len(tt.want))
		}
		<-e.fileDone
		if fileBodies.Load() == before {
			t.Errorf("GET %s: net/http sent the file without sendFile", tt.name)
		}
	}
}

// A client that stops reading a file net/http serves (a range, which the
// fast path hands over) is cut a stall after it took its last bytes, as
// on the fast path (TestWriteStall): the kernel's trickle into its full
// buffers does not count.
func TestFallbackWriteStall(t *testing.T) {
	const stall = 2 * time.Second
	e := newEnv(t, func(s *Server) { s.WriteStall = stall })
	e.addFile("big", make([]byte, 64<<20))
	c := e.dial()
	c.(*net.TCPConn).SetReadBuffer(4 << 10) // full at once, as a client that never reads
	before := fileBodies.Load()
	start := time.Now()
	io.WriteString(c, get("/serve/big", "Range: bytes=100-\r\n"))
	select {
	case <-e.fileDone:
		if el := time.Since(start); el > stall+stall*3/4 {
			t.Errorf("a stalled client cut after %v, want about %v (one stall period)", el, stall)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a stalled client still holds net/http's handler after 20 s")
	}
	if fileBodies.Load() == before {
		t.Error("net/http sent the range without sendFile")
	}
}
