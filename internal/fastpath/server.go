package fastpath

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Hit answers a plain GET, if it can: it appends the response's header
// fields to dst, each ending in "\r\n" (the status line, Date and the
// blank line are the server's), and returns the rest of the response. ok
// false sends the request to net/http instead. Hit must not keep req or
// anything in it.
type Hit func(dst []byte, req *Request) (head []byte, resp Response, ok bool)

// Request is a request the fast path parsed for Hit: a GET of Path, with
// no Range and no condition but these two (see NotModified).
type Request struct {
	Path            string // an absolute path, with no query or escape
	IfModifiedSince []byte // the header's value, trimmed; empty if absent
	IfNoneMatch     []byte // the header's value, trimmed; empty if absent
}

// Response is what follows the header fields: 304 Not Modified and no
// body, or a 200 with Data, or else the first Size bytes of File, sent
// by sendfile(2) and then released. Data must not change once returned.
type Response struct {
	NotModified bool
	Data        []byte
	File        File
	Size        int64
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
	// Fallback serves every other request; its ReadHeaderTimeout and
	// IdleTimeout bound the fast path's reads as they bound its own (see
	// readHead). Serve wraps its Handler and ConnContext (see reclaim).
	Fallback *http.Server
	// WriteStall cuts a connection whose client takes no bytes of a
	// response for so long (see stallClock), on the fast path and in
	// Fallback, which gets every connection wrapped in StallConn; zero
	// means no limit. mirrord sets WriteStall.
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
		if !s.start(nc, nil, time.Now()) {
			return http.ErrServerClosed
		}
	}
}

// start serves nc on the fast path, pending first (bytes the client sent
// that were read but not answered). accepted is when a new connection was
// accepted; zero for one that comes back from Fallback after a response.
// It closes nc and returns false once Shutdown has begun: it may be in
// wg.Wait already.
func (s *Server) start(nc net.Conn, pending []byte, accepted time.Time) bool {
	src := &source{Conn: nc, pending: pending}
	c := &conn{s: s, nc: nc, src: src, br: bufio.NewReaderSize(src, headSize), accepted: accepted,
		out: make([]byte, statusRoom, 512)}
	c.w = sender{nc: nc, stall: s.WriteStall}
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
	date     [29]byte      // the Date value of dateSec
	dateSec  int64
	accepted time.Time // when a new connection was accepted, until its first response
	readSet  time.Time // when the idle read deadline was last moved
	w        sender    // writes the responses, under the stall rule
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
	var fr Request
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
		var resp Response
		if ok {
			fr = Request{Path: string(req.path), IfModifiedSince: req.ims, IfNoneMatch: req.inm}
			c.out, resp, ok = s.Hit(c.out[:statusRoom], &fr)
		}
		if !ok {
			handed = c.handOff()
			return
		}
		c.br.Discard(len(head))
		out := c.endHead(resp.NotModified, req.close)
		switch {
		case resp.NotModified:
			_, err = c.w.write(out, nil)
		case resp.File != nil:
			_, err = c.w.sendFile(out, resp.File.Fd(), 0, resp.Size)
			resp.File.Release()
		default:
			_, err = c.w.write(out, resp.Data)
		}
		c.accepted = time.Time{} // from here on, keep-alive's limits
		if err != nil || req.close || s.closing.Load() {
			return
		}
	}
}

// readHead returns the next request head, still in the read buffer. The
// limits are net/http's: a new connection has ReadHeaderTimeout from
// accept for its whole first head; a kept-alive one waits IdleTimeout
// from the end of the last response for the first byte of the next, and
// then ReadHeaderTimeout for the rest of the head.
//
// A head is read whole before it is handed to Fallback (errHandoff, with
// the head in c.src.pending when it is longer than the read buffer), so
// that a hand-off never restarts the clock: net/http sets its own
// deadline when it gets the connection, but it finds the whole head
// buffered and never waits for the client under it. The alternative, a
// connection whose SetReadDeadline cannot go past the head's deadline,
// would have to know when net/http is done with the head: it clears the
// deadline right then, and that clear must get through, or the body and
// the background read after it would time out at the head's deadline.
func (c *conn) readHead() ([]byte, error) {
	if c.br.Buffered() == 0 {
		if err := c.waitFirst(); err != nil {
			return nil, err
		}
		if _, err := c.br.Peek(1); err != nil {
			return nil, err
		}
	}
	scanned := 0
	for partial := false; ; partial = true {
		buf, _ := c.br.Peek(c.br.Buffered())
		n, next := headEnd(buf, scanned)
		if n > 0 {
			return buf[:n], nil
		}
		scanned = next
		if !partial {
			// The rest of a kept-alive connection's head must come
			// within ReadHeaderTimeout of its first bytes.
			if err := c.waitRest(); err != nil {
				return nil, err
			}
		}
		if len(buf) == headSize {
			return nil, c.readLongHead(scanned)
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// readLongHead reads the rest of a head longer than the read buffer,
// scanned up to from, into c.src.pending, for Fallback (which allows up
// to MaxHeaderBytes): until its end, or until net/http would refuse it
// as too large anyway. It returns errHandoff, or the read's error.
func (c *conn) readLongHead(from int) error {
	buf, _ := c.br.Peek(c.br.Buffered())
	head := append(append(make([]byte, 0, 2*headSize), buf...), c.src.pending...)
	c.br.Discard(len(buf))
	c.src.pending = nil
	limit := c.s.Fallback.MaxHeaderBytes
	if limit <= 0 {
		limit = http.DefaultMaxHeaderBytes
	}
	limit += 4096 // net/http's allowance for its read buffer
	for {
		n, next := headEnd(head, from)
		if n > 0 || len(head) >= limit {
			c.src.pending = head
			return errHandoff
		}
		from = next
		if len(head) == cap(head) {
			head = append(head, 0)[:len(head)]
		}
		m, err := c.nc.Read(head[len(head):min(cap(head), limit)])
		head = head[:len(head)+m]
		if err != nil {
			return err
		}
	}
}

// waitFirst sets the deadline for the first byte of a request: that of
// the whole head on a new connection, IdleTimeout on a kept-alive one.
// Moving a deadline costs a timer update, so an idle deadline set less
// than a sixteenth of IdleTimeout ago (at most a second) stays, and the
// limit is then that much shorter. It fails once Shutdown has begun:
// Shutdown set the deadline in the past before this call, or sets it
// after the check, either way the read does not wait.
func (c *conn) waitFirst() error {
	if !c.accepted.IsZero() {
		c.setReadDeadline(c.accepted, c.s.headerTimeout())
	} else if d := c.s.idleTimeout(); d > 0 {
		now := time.Now()
		if now.Sub(c.readSet) > min(d/16, time.Second) {
			c.nc.SetReadDeadline(now.Add(d))
			c.readSet = now
		}
	} else {
		c.setReadDeadline(time.Time{}, 0)
	}
	return c.closed()
}

// waitRest sets the deadline for the rest of a head whose first bytes
// came: on a new connection, the one from accept stays.
func (c *conn) waitRest() error {
	if c.accepted.IsZero() {
		c.setReadDeadline(time.Now(), c.s.headerTimeout())
	}
	return c.closed()
}

// setReadDeadline sets the read deadline d after from, or none if d is 0.
func (c *conn) setReadDeadline(from time.Time, d time.Duration) {
	if d > 0 {
		c.nc.SetReadDeadline(from.Add(d))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
	c.readSet = time.Time{} // the next idle wait must move it
}

func (c *conn) closed() error {
	if c.s.closing.Load() {
		return http.ErrServerClosed
	}
	return nil
}

// headerTimeout and idleTimeout are Fallback's, as net/http reads them.
func (s *Server) headerTimeout() time.Duration {
	if d := s.Fallback.ReadHeaderTimeout; d > 0 {
		return d
	}
	return s.Fallback.ReadTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if d := s.Fallback.IdleTimeout; d > 0 {
		return d
	}
	return s.Fallback.ReadTimeout
}

// statusRoom is the room Hit's dst leaves for the status line, which
// endHead writes once Hit has said which status it is.
const statusRoom = 32

// endHead ends the response head in c.out (room for the status line,
// then Hit's fields) and returns it: the status line, the fields, Date,
// Connection: close if asked, and the blank line.
func (c *conn) endHead(notModified, close bool) []byte {
	now := time.Now()
	if sec := now.Unix(); sec != c.dateSec {
		AppendDate(c.date[:0], now)
		c.dateSec = sec
	}
	b := append(c.out, "Date: "...)
	b = append(b, c.date[:]...)
	b = append(b, crlf...)
	if close {
		b = append(b, "Connection: close\r\n"...)
	}
	c.out = append(b, crlf...)
	status := "HTTP/1.1 200 OK\r\n"
	if notModified {
		status = "HTTP/1.1 304 Not Modified\r\n"
	}
	start := statusRoom - len(status)
	copy(c.out[start:], status)
	return c.out[start:]
}

// handOff gives the connection, and what it sent that is not answered
// yet, to Fallback. It reports whether Fallback took it.
func (c *conn) handOff() bool {
	c.nc.SetReadDeadline(time.Time{}) // net/http sets its own; the head is read already (see readHead)
	c.nc.SetWriteDeadline(time.Time{})
	var nc net.Conn = c.nc
	if c.s.WriteStall > 0 {
		nc = StallConn(nc, c.s.WriteStall) // net/http's writes under the same rule
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
	net.Conn               // raw, in StallConn if WriteStall is set
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

// ReadFrom keeps sendfile(2) for net/http's file responses (see
// stallConn.ReadFrom).
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
