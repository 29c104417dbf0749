package fastpath

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mirrord/mirrord/internal/accesslog"
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
	// Now is when the event loop last woke (or came back from a yield),
	// at most one batch of its ready connections ago: the time of the
	// request for what a hit needs one for (a database's age, the
	// file's last use), without a clock read each. Zero: the handler
	// reads the clock.
	Now time.Time
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
//
// The fast path's connections are not goroutines: a few event loops (see
// poller), one per P, each own theirs, read what epoll(7) says is there
// and answer it at once. A goroutine per connection spent a fifth of a
// small hit's CPU in Go's scheduler and netpoller, parking after every
// response and being woken for the next request, and one more read(2)
// that found nothing; a loop answers the requests of every ready
// connection in one go.
type Server struct {
	Hit Hit
	// Fallback serves every other request; its ReadHeaderTimeout and
	// IdleTimeout bound the fast path's reads as they bound its own (see
	// lconn.deadline). Serve wraps its Handler and ConnContext (see
	// reclaim).
	Fallback *http.Server
	// WriteStall cuts a connection whose client takes no bytes of a
	// response for so long (see stallClock), on the fast path and in
	// Fallback, which gets every connection wrapped in StallConn; zero
	// means no limit. mirrord sets WriteStall.
	WriteStall time.Duration
	// AccessLog, if set, gets a line for each response of the fast path;
	// Fallback's handler logs its own (accesslog.Handler).
	AccessLog *accesslog.Logger

	closing atomic.Bool // Shutdown has begun
	force   atomic.Bool // Shutdown's context ended: close everything
	mu      sync.Mutex
	ln      net.Listener
	loops   []*poller      // none where the platform has no epoll: all is Fallback's
	next    atomic.Uint32  // the loop the next connection goes to
	wg      sync.WaitGroup // the loops
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
	s.handoff = &handoffListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	for range runtime.GOMAXPROCS(0) {
		p, err := newPoller(s)
		if err != nil {
			break // no event loop here: every connection is Fallback's
		}
		s.loops = append(s.loops, p)
		s.wg.Add(1)
		go p.run()
	}
	s.mu.Unlock()
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
		s.adopt(nc, nil, time.Now())
	}
}

// adopt gives nc to an event loop, pending first (bytes the client sent
// that were read but not answered). accepted is when a new connection was
// accepted; zero for one that comes back from Fallback after a response.
// A connection no loop can take (no TCP, no epoll) is Fallback's.
func (s *Server) adopt(nc net.Conn, pending []byte, accepted time.Time) {
	if s.closing.Load() {
		nc.Close()
		return
	}
	if len(s.loops) > 0 {
		if sock, err := detach(nc); err == nil {
			p := s.loops[s.next.Add(1)%uint32(len(s.loops))]
			if !p.adopt(sock, pending, accepted) {
				closeSocket(sock) // the loop is gone: shutting down
			}
			return
		} else if !errors.Is(err, errNoSocket) {
			return // nc is closed
		}
	}
	s.toFallback(nc, pending)
}

// toFallback hands nc, with what the client sent that is not answered
// yet, to Fallback, its writes under the stall rule. The head is read
// whole already (see lconn.deadline): net/http sets its own deadlines,
// and finds no head to wait for.
func (s *Server) toFallback(nc net.Conn, pending []byte) {
	var wrapped net.Conn = nc
	if s.WriteStall > 0 {
		wrapped = StallConn(nc, s.WriteStall) // net/http's writes under the same rule
	}
	rc := &replayConn{Conn: wrapped, s: s, raw: nc, pending: pending}
	go func() {
		if !s.handoff.offer(rc) {
			nc.Close()
		}
	}()
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
	loops := s.loops
	s.mu.Unlock()
	for _, p := range loops {
		p.poke() // it closes its idle connections, and the rest when their responses end
	}

	fallback := make(chan error, 1)
	go func() { fallback <- s.Fallback.Shutdown(ctx) }()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.force.Store(true)
		for _, p := range loops {
			p.poke()
		}
		<-fallback
		return ctx.Err()
	}
	return <-fallback
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

// longHeadLimit is how much of a head longer than headSize the fast path
// reads for Fallback: net/http refuses a longer one anyway.
func (s *Server) longHeadLimit() int {
	limit := s.Fallback.MaxHeaderBytes
	if limit <= 0 {
		limit = http.DefaultMaxHeaderBytes
	}
	return limit + 4096 // net/http's allowance for its read buffer
}

// statusRoom is the room Hit's dst leaves for the status line, which
// endHead writes once Hit has said which status it is.
const statusRoom = 32

// dateCache is the Date value of the current second.
type dateCache struct {
	date [29]byte
	sec  int64
}

// endHead ends the response head in out (room for the status line, then
// Hit's fields) and returns it: the status line, the fields, Date,
// Connection: close if asked, and the blank line.
func endHead(out []byte, d *dateCache, now time.Time, notModified, close bool) []byte {
	if sec := now.Unix(); sec != d.sec {
		AppendDate(d.date[:0], now)
		d.sec = sec
	}
	b := append(out, "Date: "...)
	b = append(b, d.date[:]...)
	b = append(b, crlf...)
	if close {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, crlf...)
	status := "HTTP/1.1 200 OK\r\n"
	if notModified {
		status = "HTTP/1.1 304 Not Modified\r\n"
	}
	start := statusRoom - len(status)
	copy(b[start:], status)
	return b[start:]
}

// replayConn is a connection handed to Fallback: it reads what the fast
// path read and did not answer, then the connection.
type replayConn struct {
	net.Conn          // raw, in StallConn if WriteStall is set
	s        *Server  // whose fast path it left
	raw      net.Conn // the connection itself
	pending  []byte   // read by the fast path, not yet by Fallback
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
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
