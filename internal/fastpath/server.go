package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Hit answers a plain GET of path, if it can: it appends the response's
// header fields to dst, each ending in "\r\n" (Date, the status line and
// the blank line are the server's), and returns the body. ok false sends
// the request to net/http instead. Hit must not keep path.
type Hit func(dst []byte, path string) (head []byte, body Body, ok bool)

// Body is a response body: Data, or else the first Size bytes of File,
// sent by sendfile(2) and then released. Data must not change once
// returned.
type Body struct {
	Data []byte
	File File
	Size int64
}

// File is an open file that the fast path sends and then releases.
type File interface {
	Fd() int
	Release()
}

// Server answers the requests Hit can on its own and hands a connection
// that sends anything else, with its unread bytes, to Fallback. The
// connection comes back after a response whose end is plain from its
// length (see reclaim), so that one miss does not cost a client's later
// hits on the same connection.
type Server struct {
	Hit Hit
	// Fallback serves every other request; its IdleTimeout and
	// ReadHeaderTimeout also bound the fast path's reads. Serve wraps its
	// Handler and ConnContext (see reclaim).
	Fallback *http.Server
	// Wrap, if set, wraps each connection before Fallback gets it.
	Wrap func(net.Conn) net.Conn
	// WriteStall cuts a connection whose write makes no progress for so
	// long; zero means no limit.
	WriteStall time.Duration

	closing atomic.Bool
	mu      sync.Mutex
	ln      net.Listener
	conns   map[*conn]struct{}
	wg      sync.WaitGroup // the conns' goroutines
	handoff *handoffListener
}

// headSize bounds a request head on the fast path; a longer one (big
// cookies, say) is net/http's, which allows Fallback.MaxHeaderBytes.
const headSize = 4096

// Serve accepts connections on ln until Shutdown. It serves one listener.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.ln != nil {
		s.mu.Unlock()
		return errors.New("fastpath: Serve called twice")
	}
	s.ln = ln
	s.conns = map[*conn]struct{}{}
	s.handoff = &handoffListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	s.mu.Unlock()
	if s.closing.Load() {
		return http.ErrServerClosed
	}
	s.wrapFallback()
	go func() {
		s.Fallback.Serve(s.handoff)
		s.handoff.Close() // no connection waits for a server that is gone
	}()

	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: back off as net/http
			// does; nothing signals that descriptors are free again.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !s.start(nc, nil) {
			return http.ErrServerClosed
		}
	}
}

// start serves nc on the fast path, pending first (bytes the client sent
// that were read but not answered). It closes nc and returns false once
// Shutdown has begun: it may be in wg.Wait already.
func (s *Server) start(nc net.Conn, pending []byte) bool {
	src := &source{Conn: nc, pending: pending}
	c := &conn{s: s, nc: nc, src: src, br: bufio.NewReaderSize(src, headSize)}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		nc.Close()
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
	return true
}

// Shutdown stops accepting, lets every response in progress finish,
// closes idle connections and waits for the rest, and shuts Fallback
// down, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		// Wakes a connection waiting for a request; one that is answering
		// sees closing when it is done. See conn.waitDeadline.
		c.nc.SetReadDeadline(aLongTimeAgo)
	}
	s.mu.Unlock()

	fallback := make(chan error, 1)
	go func() { fallback <- s.Fallback.Shutdown(ctx) }()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-fallback
		return ctx.Err()
	}
	return <-fallback
}

var aLongTimeAgo = time.Unix(1, 0)

// conn is one connection while the fast path owns it.
type conn struct {
	s        *Server
	nc       net.Conn
	src      *source       // nc's bytes, after those read before the fast path had it
	br       *bufio.Reader // reads src
	out      []byte        // the response head, reused
	bufs     [2][]byte     // head and body for writev
	date     [29]byte      // the Date value of dateSec
	dateSec  int64
	readSet  time.Time // when the idle read deadline was last moved
	writeSet time.Time // when the write deadline was last moved
	send     sendState // the file being sent (see sendFile)
}

var errHandoff = errors.New("not for the fast path")

func (c *conn) serve() {
	s := c.s
	handed := false
	defer func() {
		if !handed {
			c.nc.Close()
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	for {
		head, err := c.readHead()
		if errors.Is(err, errHandoff) {
			handed = c.handOff()
			return
		}
		if err != nil {
			return // closed, timed out or shutting down, as net/http would
		}
		req, ok := parseHead(head)
		var body Body
		if ok {
			c.out = c.startHead()
			c.out, body, ok = s.Hit(c.out, string(req.path))
		}
		if !ok {
			handed = c.handOff()
			return
		}
		c.br.Discard(len(head))
		if req.close {
			c.out = append(c.out, "Connection: close\r\n"...)
		}
		c.out = append(c.out, crlf...)
		if body.File != nil {
			err = c.sendFile(c.out, body.File.Fd(), body.Size)
			body.File.Release()
		} else {
			err = c.write(c.out, body.Data)
		}
		if err != nil || req.close || s.closing.Load() {
			return
		}
	}
}

// readHead returns the next request head, still in the read buffer.
func (c *conn) readHead() ([]byte, error) {
	if c.br.Buffered() == 0 {
		if err := c.waitDeadline(c.s.Fallback.IdleTimeout, false); err != nil {
			return nil, err
		}
		if _, err := c.br.Peek(1); err != nil {
			return nil, err
		}
	}
	for partial := false; ; partial = true {
		buf, _ := c.br.Peek(c.br.Buffered())
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], nil
		}
		if len(buf) == headSize {
			return nil, errHandoff
		}
		if !partial {
			// The rest of a head must come within ReadHeaderTimeout of
			// its first bytes, as in net/http.
			if err := c.waitDeadline(c.s.Fallback.ReadHeaderTimeout, true); err != nil {
				return nil, err
			}
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// waitDeadline sets the read deadline d from now. Moving a deadline costs
// a timer update, so an idle deadline already set less than a second ago
// stays (the limit is then d minus up to a second). It fails once Shutdown
// has begun: Shutdown set the deadline in the past before this call, or
// sets it after the check, either way the read does not wait.
func (c *conn) waitDeadline(d time.Duration, exact bool) error {
	if d > 0 {
		now := time.Now()
		if exact || now.Sub(c.readSet) > time.Second {
			c.nc.SetReadDeadline(now.Add(d))
			c.readSet = now
			if exact {
				c.readSet = time.Time{} // the next idle wait must move it back
			}
		}
	}
	if c.s.closing.Load() {
		return http.ErrServerClosed
	}
	return nil
}

// startHead begins a response head: the status line and Date.
func (c *conn) startHead() []byte {
	now := time.Now()
	if sec := now.Unix(); sec != c.dateSec {
		now.UTC().AppendFormat(c.date[:0], http.TimeFormat)
		c.dateSec = sec
	}
	b := append(c.out[:0], "HTTP/1.1 200 OK\r\nDate: "...)
	b = append(b, c.date[:]...)
	return append(b, crlf...)
}

// write sends head and body in one writev(2). A write that makes progress
// gets WriteStall more, once: these are small responses, and a client that
// never reads has its kernel take a few bytes now and then, which would
// otherwise look like progress for ever (see the stall rule in sendfile).
func (c *conn) write(head, body []byte) error {
	c.bufs = [2][]byte{head, body}
	v := net.Buffers(c.bufs[:])
	for extended := false; len(v) > 0; {
		c.writeDeadline()
		n, err := v.WriteTo(c.nc)
		if err != nil {
			if n > 0 && !extended && errors.Is(err, os.ErrDeadlineExceeded) {
				c.writeSet = time.Time{} // slow, not stalled
				extended = true
				continue
			}
			return err
		}
	}
	return nil
}

// writeDeadline moves the write deadline WriteStall ahead, unless that
// was done less than a second ago (moving it costs a timer update).
func (c *conn) writeDeadline() {
	if c.s.WriteStall > 0 {
		if now := time.Now(); now.Sub(c.writeSet) > time.Second {
			c.nc.SetWriteDeadline(now.Add(c.s.WriteStall))
			c.writeSet = now
		}
	}
}

// handOff gives the connection, and what it sent that is not answered
// yet, to Fallback. It reports whether Fallback took it.
func (c *conn) handOff() bool {
	c.nc.SetReadDeadline(time.Time{}) // net/http sets its own
	c.nc.SetWriteDeadline(time.Time{})
	var nc net.Conn = c.nc
	if c.s.Wrap != nil {
		nc = c.s.Wrap(nc)
	}
	return c.s.handoff.offer(&replayConn{Conn: nc, s: c.s, raw: c.nc, br: c.br, src: c.src})
}

// source is a connection's byte stream: pending, then the connection.
type source struct {
	net.Conn
	pending []byte
}

func (s *source) Read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	return s.Conn.Read(p)
}

// replayConn is a connection handed to Fallback: it reads what the fast
// path read and did not answer, then the connection.
type replayConn struct {
	net.Conn               // Wrap(raw)
	s        *Server       // whose fast path it left
	raw      net.Conn      // the accepted connection
	br       *bufio.Reader // the fast path's reader, nil once drained
	src      *source       // what br reads
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	if len(c.src.pending) > 0 {
		return c.src.Read(p)
	}
	return c.Conn.Read(p)
}

// unread returns the bytes read from c's connection that Read has not
// returned yet.
func (c *replayConn) unread() []byte {
	var b []byte
	if c.br != nil {
		buf, _ := c.br.Peek(c.br.Buffered())
		b = append(b, buf...)
	}
	return append(b, c.src.pending...)
}

// ReadFrom keeps sendfile(2) for net/http's file responses.
func (c *replayConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite lets net/http half-close, as it does on a plain TCP conn.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// handoffListener is the listener Fallback serves: it accepts the
// connections the fast path hands over.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

func (l *handoffListener) offer(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}
