package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// Stall bounds (issue 7). The server has no overall read or write timeout,
// since a package may rightly take long on a slow link; instead a
// connection that makes no progress for this long is cut, so that a client
// that stops reading, or trickles nothing, cannot pin a goroutine, a file
// descriptor and a flight's file forever. pacman itself gives up after 10 s
// below 1 B/s, so a minute without a byte is no client worth waiting for.
const (
	WriteStall = 60 * time.Second
	bodyStall  = 60 * time.Second
)

// StallConn wraps c so that a write that makes no progress for stall
// fails (the handler's write errors and the connection is closed). A write
// that makes some progress gets another stall period, so a slow but live
// client is never cut. File bodies still go out by sendfile(2). A
// connection other than TCP is returned as it is.
func StallConn(c net.Conn, stall time.Duration) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		return &stallConn{TCPConn: tc, stall: stall}
	}
	return c
}

// stallConn extends its write deadline before every write and while a
// write makes progress. net/http sets no write deadline of its own when
// the server's WriteTimeout is 0, so nothing else moves it.
type stallConn struct {
	*net.TCPConn
	stall time.Duration
}

func (c *stallConn) Write(p []byte) (int, error) {
	n := 0
	for {
		c.TCPConn.SetWriteDeadline(time.Now().Add(c.stall))
		m, err := c.TCPConn.Write(p[n:])
		n += m
		if m > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			continue // slow, not stalled
		}
		return n, err
	}
}

// ReadFrom keeps sendfile(2) for regular files: a sendfile cut by the
// deadline has advanced the file's offset (or the LimitedReader's N) by
// what it sent, so it resumes where it stopped. Any other reader is copied
// through Write, which never loses a buffered byte.
func (c *stallConn) ReadFrom(r io.Reader) (int64, error) {
	if !regularFile(r) {
		return io.Copy(writerOnly{c}, r)
	}
	var n int64
	for {
		c.TCPConn.SetWriteDeadline(time.Now().Add(c.stall))
		m, err := c.TCPConn.ReadFrom(r)
		n += m
		if m > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		return n, err
	}
}

// regularFile reports whether r is a file the tree handler sends: the
// handler only ever opens regular files (store.Open), so the type says
// enough and the hit path costs no extra fstat(2).
func regularFile(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	_, ok := r.(*os.File)
	return ok
}

// writerOnly hides ReadFrom, so io.Copy does not call it again.
type writerOnly struct{ io.Writer }

// limitBodyStall gives a request body a read deadline that moves on with
// every read: an upload that trickles is fine, one that stops for
// bodyStall fails (the handler sees a read error). The deadline also
// bounds what net/http reads of an unread body after the handler, which
// would otherwise wait forever for a client that announced a body and
// never sent it. It is cleared at the end of the body, before net/http's
// background read of the connection starts waiting under it.
func limitBodyStall(w http.ResponseWriter, r *http.Request, stall time.Duration) *http.Request {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return r
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(stall)) != nil {
		return r // not a connection that has deadlines (a test recorder)
	}
	r2 := *r
	r2.Body = &stallBody{ReadCloser: r.Body, rc: rc, stall: stall}
	return &r2
}

type stallBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	stall time.Duration
	done  bool
}

func (b *stallBody) Read(p []byte) (int, error) {
	if !b.done {
		b.rc.SetReadDeadline(time.Now().Add(b.stall))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
