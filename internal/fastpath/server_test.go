package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testFile is a File whose releases are counted and signalled.
type testFile struct {
	f        *os.File
	released chan struct{}
}

func (f *testFile) Fd() int { return int(f.f.Fd()) }

func (f *testFile) Release() { f.released <- struct{}{} }

// env is a fast-path server on loopback: "/mem/NAME" bodies come from
// memory, "/file/NAME" from files; anything else, and every request the
// fast path declines, reaches the fallback handler, which says so in an
// X-Fallback header. The fallback serves "/serve/NAME" from the file NAME,
// echoes "/len/..." with a Content-Length, and echoes anything else
// without one.
type env struct {
	t        *testing.T
	srv      *Server
	addr     string
	mem      map[string][]byte
	files    map[string]string // name -> path
	released chan struct{}
	fallback atomic.Int64  // requests the fallback served
	fileDone chan struct{} // a "/serve/" request's handler returned
	served   chan error    // Serve's result
	once     sync.Once     // shutdown's
}

func newEnv(t *testing.T, configure func(*Server)) *env {
	t.Helper()
	e := &env{t: t, mem: map[string][]byte{}, files: map[string]string{}, released: make(chan struct{}, 1000), served: make(chan error, 1),
		fileDone: make(chan struct{}, 100)}
	e.srv = &Server{
		Hit: e.hit,
		Fallback: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.fallback.Add(1)
			w.Header().Set("X-Fallback", "1")
			if name, ok := strings.CutPrefix(r.URL.Path, "/serve/"); ok { // a file, by sendfile
				http.ServeFile(w, r, e.files[name])
				select {
				case e.fileDone <- struct{}{}:
				default: // nobody waits for it
				}
				return
			}
			body, _ := io.ReadAll(r.Body)
			msg := fmt.Sprintf("%s %s body=%q", r.Method, r.URL.Path, body)
			if strings.HasPrefix(r.URL.Path, "/len/") { // else net/http ends the response
				w.Header().Set("Content-Length", fmt.Sprint(len(msg)))
			}
			io.WriteString(w, msg)
		})},
	}
	if configure != nil {
		configure(e.srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	go func() { e.served <- e.srv.Serve(ln) }()
	t.Cleanup(e.shutdown)
	return e
}

// shutdown shuts the server down and checks that it went; once.
func (e *env) shutdown() {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			e.t.Errorf("Shutdown = %v", err)
		}
		if err := <-e.served; !errors.Is(err, http.ErrServerClosed) {
			e.t.Errorf("Serve = %v, want ErrServerClosed", err)
		}
	})
}

func (e *env) hit(dst []byte, req *Request) ([]byte, Response, bool) {
	path := req.Path
	if data, ok := e.mem[strings.TrimPrefix(path, "/mem/")]; ok && strings.HasPrefix(path, "/mem/") {
		return append(dst, "Content-Length: "+fmt.Sprint(len(data))+"\r\n"...), Response{Data: data}, true
	}
	if p, ok := e.files[strings.TrimPrefix(path, "/file/")]; ok && strings.HasPrefix(path, "/file/") {
		f, err := os.Open(p)
		if err != nil {
			e.t.Error(err)
			return dst, Response{}, false
		}
		info, _ := f.Stat()
		tf := &testFile{f: f, released: e.released}
		e.t.Cleanup(func() { f.Close() })
		return append(dst, "Content-Length: "+fmt.Sprint(info.Size())+"\r\n"...), Response{File: tf, Size: info.Size()}, true
	}
	return dst, Response{}, false
}

func (e *env) addFile(name string, data []byte) {
	p := filepath.Join(e.t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.files[name] = p
}

func (e *env) dial() net.Conn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// readResponse reads one response to a GET and its body from br.
func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	return readResponseTo(t, br, "GET")
}

func readResponseTo(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return resp, string(body)
}

func get(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + strings.Join(extra, "") + "\r\n"
}

func TestKeepAliveFastRequests(t *testing.T) {
	e := newEnv(t, nil)
	e.mem["a"] = []byte("hello")
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, more than a socket buffer
	e.addFile("big", big)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i := range 5 {
		for _, tc := range []struct{ path, want string }{{"/mem/a", "hello"}, {"/file/big", string(big)}} {
			resp, err := client.Get("http://" + e.addr + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != tc.want {
				t.Fatalf("round %d GET %s = %d, %d bytes, want 200 and %d bytes", i, tc.path, resp.StatusCode, len(body), len(tc.want))
			}
			if resp.Header.Get("Date") == "" || resp.Header.Get("X-Fallback") != "" {
				t.Errorf("GET %s headers %v: want a Date and no fallback", tc.path, resp.Header)
			}
		}
	}
	if n := e.fallback.Load(); n != 0 {
		t.Errorf("fallback served %d requests, want 0", n)
	}
	for range 5 {
		<-e.released // every file body released once
	}
	select {
	case <-e.released:
		t.Error("a file was released more than once")
	default:
	}
}

// A connection is handed over with the requests it pipelined: answers
// come in order, the fallback's included, and the body of a request the
// fast path declined reaches the fallback whole.
func TestPipelinedHandOff(t *testing.T) {
	e := newEnv(t, nil)
	e.mem["a"] = []byte("AAAA")
	c := e.dial()
	post := "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 7\r\n\r\npayload"
	io.WriteString(c, get("/mem/a")+get("/mem/a", "Range: bytes=0-1\r\n")+post+get("/mem/a"))
	br := bufio.NewReader(c)
	want := []struct{ fallback, body string }{
		{"", "AAAA"},
		{"1", `GET /mem/a body=""`},
		{"1", `POST /upload body="payload"`},
		{"1", `GET /mem/a body=""`}, // the connection is net/http's now
	}
	for i, w := range want {
		resp, body := readResponse(t, br)
		if resp.Header.Get("X-Fallback") != w.fallback || body != w.body {
			t.Errorf("response %d: fallback %q body %q, want %q %q", i, resp.Header.Get("X-Fallback"), body, w.fallback, w.body)
		}
	}
}

func TestHandOffs(t *testing.T) {
	bigHeader := "Accept: " + strings.Repeat("x", headSize) + "\r\n"
	tests := []struct {
		name string
		req  string
	}{
		{"unknown path", get("/nothing")},
		{"head", "HEAD /mem/a HTTP/1.1\r\nHost: test\r\n\r\n"},
		{"http/1.0", "GET /mem/a HTTP/1.0\r\n\r\n"},
		{"head larger than the fast path's buffer", get("/mem/a", bigHeader)},
		{"query", get("/mem/a?x=1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.mem["a"] = []byte("AAAA")
			c := e.dial()
			io.WriteString(c, tt.req)
			resp, _ := readResponseTo(t, bufio.NewReader(c), strings.Fields(tt.req)[0])
			if resp.Header.Get("X-Fallback") != "1" {
				t.Errorf("%s: answered by the fast path (%d %v), want the fallback", tt.name, resp.StatusCode, resp.Header)
			}
		})
	}
}

func TestConnectionClose(t *testing.T) {
	e := newEnv(t, nil)
	e.mem["a"] = []byte("AAAA")
	c := e.dial()
	io.WriteString(c, get("/mem/a", "Connection: close\r\n"))
	br := bufio.NewReader(c)
	resp, body := readResponse(t, br)
	if body != "AAAA" || !resp.Close {
		t.Errorf("body %q close %v, want AAAA and Connection: close", body, resp.Close)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after Connection: close, read = %d, %v; want EOF", n, err)
	}
}

// A client that stops reading a big file is cut after WriteStall, and the
// file is released.
// A client that stops reading is cut WriteStall after the last byte that
// went out to it: its first burst fills the socket buffers at once, and
// must not earn it a second stall period.
func TestWriteStall(t *testing.T) {
	const stall = 2 * time.Second
	e := newEnv(t, func(s *Server) { s.WriteStall = stall })
	e.addFile("big", make([]byte, 64<<20))
	c := e.dial()
	c.(*net.TCPConn).SetReadBuffer(4 << 10) // full at once, as a client that never reads
	start := time.Now()
	io.WriteString(c, get("/file/big"))
	select {
	case <-e.released:
		if el := time.Since(start); el > stall+stall*3/4 {
			t.Errorf("a stalled client cut after %v, want about %v (one stall period)", el, stall)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a stalled client still holds the file after 20 s")
	}
}

// A slow reader is not a stalled one: it gets the whole file, though the
// transfer takes many stall periods. Its receive buffer is small, as on a
// slow link: the stall clock restarts when the kernel wakes the writer,
// which it does once the client has drained a good part of what is
// queued, and loopback's buffers of several MB would take a reader this
// slow longer than this test's stall to drain (with the real 60 s stall,
// a reader of some 30 KB/s or more).
func TestSlowReaderGetsAll(t *testing.T) {
	const stall = 300 * time.Millisecond
	e := newEnv(t, func(s *Server) { s.WriteStall = stall })
	data := pattern(256 << 10)
	e.addFile("big", data)
	c := e.dial()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	start := time.Now()
	io.WriteString(c, get("/file/big"))
	if got := readSlowly(t, c, len(data), 10*time.Millisecond); !bytes.Equal(got, data) {
		t.Errorf("slow reader got %d bytes (intact: %v), want %d", len(got), bytes.Equal(got, data), len(data))
	}
	if el := time.Since(start); el < 2*stall {
		t.Errorf("transfer took %v, under two stall periods: the test proves nothing", el)
	}
}

// readSlowly reads a response from conn as a slow link does, up to
// 32 KiB every pause, and returns its body, up to n bytes.
func readSlowly(t *testing.T, conn net.Conn, n int, pause time.Duration) []byte {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4<<10), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 32<<10)
	for got.Len() < n {
		time.Sleep(pause) // the pace of a slow link, not a dead one
		m, err := resp.Body.Read(buf)
		got.Write(buf[:m])
		if err != nil {
			break
		}
	}
	return got.Bytes()
}

// closedAfter reads r, conn's bytes, until the server closes conn
// (answers are read and dropped) and returns how long after start that
// was; it fails the test if conn is still open after 10 s.
func closedAfter(t *testing.T, r io.Reader, conn net.Conn, start time.Time) time.Duration {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, r)
	el := time.Since(start)
	// EOF, or a reset: closing with the client's bytes unread sends RST.
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read until the server closes: %v after %v", err, el)
	}
	return el
}

// trickle sends slow a byte every 10 ms, then fast at once, then rest a
// byte every 10 ms, until the returned stop is called, which waits for it.
func trickle(conn net.Conn, slow, fast, rest string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		send := func(msg string) bool {
			for i := 0; i < len(msg); i++ {
				select {
				case <-done:
					return false
				case <-tick.C: // the attack is the pace
					if _, err := conn.Write([]byte{msg[i]}); err != nil {
						return false
					}
				}
			}
			return true
		}
		if send(slow) {
			io.WriteString(conn, fast)
			send(rest)
		}
	}()
	return func() { close(done); wg.Wait() }
}

// The header and idle limits are net/http's, from the fallback server's
// settings: a new connection has ReadHeaderTimeout from accept for its
// whole first head, however it trickles in, and whether the fast path
// hands it to net/http or not; a kept-alive one has IdleTimeout for the
// first byte of its next request, then ReadHeaderTimeout for the rest.
func TestReadTimeouts(t *testing.T) {
	const (
		header = 800 * time.Millisecond
		idle   = 1500 * time.Millisecond
	)
	slow := get("/mem/a", "Accept: "+strings.Repeat("x", 150)+"\r\n")           // 2 s at 10 ms a byte
	long := get("/mem/a", "Accept: "+strings.Repeat("x", headSize+1000)+"\r\n") // handed to net/http
	tests := []struct {
		name      string
		prelude   string        // sent at once on connect; its responses are read first
		responses int           // to prelude
		slow      string        // then trickled,
		fast      string        // sent at once,
		rest      string        // and trickled
		from      string        // "accept" or "response": where the limit counts from
		limit     time.Duration // the limit
	}{
		{"nothing sent", "", 0, "", "", "", "accept", header},
		{"partial head", "GET /mem/a HTTP/1.1\r\nHo", 0, "", "", "", "accept", header},
		{"trickled head", "", 0, slow, "", "", "accept", header},
		// 600 ms of trickle, then what makes the fast path hand the head to
		// net/http, which must not get a clock of its own.
		{"trickled long head, for net/http", "", 0, long[:60], long[60 : headSize+100], long[headSize+100:], "accept", header},
		{"kept alive, idle", get("/mem/a"), 1, "", "", "", "response", idle},
		{"kept alive after net/http's answer, idle", get("/len/x"), 1, "", "", "", "response", idle},
		{"kept alive, trickled head", get("/mem/a"), 1, slow, "", "", "response", header}, // from its first byte, 10 ms in
		{"kept alive, trickled long head", get("/mem/a"), 1, long[:60], long[60 : headSize+100], long[headSize+100:], "response", header},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(s *Server) {
				s.Fallback.ReadHeaderTimeout = header
				s.Fallback.IdleTimeout = idle
			})
			e.mem["a"] = []byte("AAAA")
			start := time.Now()
			c := e.dial()
			io.WriteString(c, tt.prelude)
			br := bufio.NewReader(c)
			for range tt.responses {
				readResponse(t, br)
			}
			if tt.from == "response" {
				start = time.Now()
			}
			stop := trickle(c, tt.slow, tt.fast, tt.rest)
			defer stop()
			el := closedAfter(t, br, c, start)
			// Never before the limit (less the idle deadline's coarseness
			// of a sixteenth), never much after.
			if el < tt.limit-tt.limit/16-10*time.Millisecond || el > tt.limit+tt.limit/2 {
				t.Errorf("%s: closed %v after the %s, want %v", tt.name, el, tt.from, tt.limit)
			}
		})
	}
}

// A kept-alive connection that asks again within IdleTimeout is served.
func TestKeepAliveWithinIdle(t *testing.T) {
	e := newEnv(t, func(s *Server) {
		s.Fallback.ReadHeaderTimeout = 100 * time.Millisecond
		s.Fallback.IdleTimeout = time.Minute
	})
	e.mem["a"] = []byte("AAAA")
	c := e.dial()
	br := bufio.NewReader(c)
	for i := range 2 {
		io.WriteString(c, get("/mem/a"))
		if _, body := readResponse(t, br); body != "AAAA" {
			t.Fatalf("request %d: body %q", i, body)
		}
		time.Sleep(300 * time.Millisecond) // idle for longer than ReadHeaderTimeout: the point here
	}
}

// 300 connections that never send a byte are all closed ReadHeaderTimeout
// after they were accepted, though IdleTimeout is long (the
// fast path held them for IdleTimeout, 120 s).
func TestSilentConnections(t *testing.T) {
	const (
		n      = 300
		header = 500 * time.Millisecond
	)
	e := newEnv(t, func(s *Server) {
		s.Fallback.ReadHeaderTimeout = header
		s.Fallback.IdleTimeout = time.Minute
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	for range n {
		start := time.Now()
		c := e.dial()
		wg.Add(1)
		go func() {
			defer wg.Done()
			el := closedAfter(t, c, c, start)
			mu.Lock()
			worst = max(worst, el)
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("%d silent connections: the last closed %v after its dial", n, worst)
	if worst > header+time.Second {
		t.Errorf("%d silent connections: the last closed %v after its dial, want at most %v", n, worst, header+time.Second)
	}
}

// A head with bare LF line ends, which net/http reads, is answered at
// once (handed to net/http), not left to time out.
func TestBareLF(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.Fallback.ReadHeaderTimeout = 5 * time.Second })
	e.mem["a"] = []byte("AAAA")
	for _, req := range []string{
		"GET /mem/a HTTP/1.1\nHost: x\n\n",
		"GET /mem/a HTTP/1.1\r\nHost: x\r\n\n",
		"GET /mem/a HTTP/1.1\r\nHost: x\nAccept: */*\r\n\r\n",
	} {
		c := e.dial()
		start := time.Now()
		io.WriteString(c, req)
		c.SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("%q: no answer within a second: %v", req, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%q = %d after %v, want 200", req, resp.StatusCode, time.Since(start))
		}
	}
}

// Shutdown closes idle connections at once, lets a response in progress
// finish, and returns.
func TestShutdown(t *testing.T) {
	e := newEnv(t, nil)
	e.mem["a"] = []byte("AAAA")
	data := make([]byte, 32<<20)
	e.addFile("big", data)

	idle := e.dial()
	io.WriteString(idle, get("/mem/a"))
	ibr := bufio.NewReader(idle)
	readResponse(t, ibr)

	busy := e.dial()
	io.WriteString(busy, get("/file/big"))
	bbr := bufio.NewReader(busy)
	resp, err := http.ReadResponse(bbr, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: read = %v, want EOF", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != int64(len(data)) {
		t.Errorf("response in progress during Shutdown: %d bytes, %v; want %d", n, err, len(data))
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if _, err := net.Dial("tcp", e.addr); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

// BenchmarkHit compares a 50 KiB hit from memory on one keep-alive
// connection through the fast path and through net/http alone.
func BenchmarkHit(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 50<<10)
	head := []byte("Content-Length: 51200\r\nContent-Type: application/octet-stream\r\n")
	run := func(b *testing.B, addr string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReaderSize(c, 64<<10)
		req := []byte(get("/mem/a"))
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			c.Write(req)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
		}
	}
	b.Run("fastpath", func(b *testing.B) {
		s := &Server{
			Hit: func(dst []byte, _ *Request) ([]byte, Response, bool) {
				return append(dst, head...), Response{Data: body}, true
			},
			Fallback: &http.Server{},
		}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		go s.Serve(ln)
		defer s.Shutdown(context.Background())
		run(b, ln.Addr().String())
	})
	b.Run("nethttp", func(b *testing.B) {
		s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Length"] = []string{"51200"}
			w.Header()["Content-Type"] = []string{"application/octet-stream"}
			w.Write(body)
		})}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		go s.Serve(ln)
		defer s.Close()
		run(b, ln.Addr().String())
	})
}

// pattern returns n bytes that differ from block to block, so that bytes
// from the wrong offset are caught.
func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>12)
	}
	return p
}
