package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/mirrord/mirrord/internal/fastpath"
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

// stallConn gives each write WriteStall under fastpath.StallClock's rule
// (nginx's send_timeout), as the fast path does its own sends. net/http
// sets no write deadline of its own when the server's WriteTimeout is 0,
// so nothing else moves it.
type stallConn struct {
	*net.TCPConn
	stall time.Duration
}

func (c *stallConn) Write(p []byte) (int, error) {
	n := 0
	err := c.send(func(fd int) (int, error) {
		m, err := syscall.Write(fd, p[n:])
		if m > 0 {
			n += m
		}
		return m, err
	}, func() bool { return n == len(p) })
	return n, err
}

// send runs op until done under the stall rule. op moves bytes to the
// socket's descriptor and returns how many.
func (c *stallConn) send(op func(fd int) (int, error), done func() bool) error {
	rc, err := c.TCPConn.SyscallConn()
	if err != nil {
		return err
	}
	var clock fastpath.StallClock
	clock.Start(time.Now())
	deadline := time.Now().Add(c.stall)
	var opErr error
	step := func(fd uintptr) bool {
		for !done() {
			m, err := op(int(fd))
			clock.Sent(m)
			switch {
			case err == syscall.EAGAIN:
				clock.Full()
				return false // wait until writable
			case err == syscall.EINTR:
				continue
			case err != nil:
				opErr = err
				return true
			}
		}
		return true
	}
	for {
		c.TCPConn.SetWriteDeadline(deadline)
		err := rc.Write(step)
		if err == nil {
			return opErr
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			var ok bool
			if deadline, ok = clock.Expired(c.stall); ok {
				continue // slow, not stalled
			}
		}
		return err
	}
}

// ReadFrom copies through Write, under its stall rule. net/http would
// otherwise use the TCP connection's ReadFrom (sendfile(2)), which retries
// after its deadline as if any byte were progress. Whole-file hits, where
// sendfile matters, are the fast path's (internal/fastpath), which keeps
// it under the same rule.
func (c *stallConn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{c}, r)
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
