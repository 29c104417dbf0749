package fastpath

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// WriteStall is how long a response may wait for a client that takes no
// bytes of it before its connection is cut, on the fast path and on
// net/http's (see StallConn). There is no overall write timeout, since a
// package may rightly take long on a slow link; but a client that stops
// reading must not pin a goroutine, a file descriptor and a flight's file
// forever. pacman itself gives up after 10 s below 1 B/s, so a minute
// without a byte is no client worth waiting for.
const WriteStall = 60 * time.Second

// stallClock is the write-stall rule of every response mirrord sends:
// nginx's send_timeout. A write may wait the stall from the last time the
// client took bytes, which is when a send follows a wakeup (the kernel
// says the socket has room again, which it does once the client has read
// a good part of what is queued), not when any send moves a byte: a
// client that never reads has its kernel take a few more bytes now and
// then (the send buffer grows, the receive queue is compacted), and
// counting those, each retry after the deadline looked like progress, and
// such a client was cut after several stall periods, or never.
//
// The zero stallClock has seen no progress; start begins a write.
type stallClock struct {
	last time.Time // when the client last took bytes
	woke bool      // the next send follows a wakeup, not a first try
}

// start begins a write at now: the client asked for what it carries.
func (c *stallClock) start(now time.Time) { c.last, c.woke = now, false }

// full notes that the socket is full: the next send follows a wakeup.
func (c *stallClock) full() { c.woke = true }

// sent notes a send of n bytes.
func (c *stallClock) sent(n int) {
	if n > 0 && c.woke {
		c.last = time.Now()
	}
}

// expired is called when the write deadline passed: it returns the new
// deadline and true if the client took bytes within the last stall, and
// false if the write is stalled.
func (c *stallClock) expired(stall time.Duration) (time.Time, bool) {
	if time.Since(c.last) >= stall {
		return time.Time{}, false
	}
	c.woke = false // the retry's first try is no wakeup
	return c.last.Add(stall), true
}

// sender writes responses to one connection under the stall rule, by
// raw sends on the socket, where it sees each wakeup (see stallClock):
// the fast path's conn has one, and so has each StallConn. It is used
// from one goroutine at a time.
type sender struct {
	nc    net.Conn
	stall time.Duration      // zero: no limit
	rc    syscall.RawConn    // nc's, made at the first send
	step  func(uintptr) bool // s.send.step, made with rc
	plain bool               // nc is no socket: no rc (see writePlain)
	moved time.Time          // when the write deadline was last moved
	send
}

// send is one response on its way to a socket: what is left of the head
// and the body, then the file fd from off to end. The fast path's event
// loop runs one per connection (see poller), and so does each sender.
type send struct {
	bufs     [2][]byte
	iov      [2]syscall.Iovec // writev's, kept to spare an allocation
	fd       int
	off, end int64
	clock    stallClock
	err      error // the step's
}

// raw returns nc's RawConn, or nil if nc is no socket.
func (s *sender) raw() syscall.RawConn {
	if s.rc == nil && !s.plain {
		if sc, ok := s.nc.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				s.rc = rc
				s.step = func(sock uintptr) bool { return s.send.step(int(sock)) }
				return rc
			}
		}
		s.plain = true
	}
	return s.rc
}

// write sends head and then body, in one writev(2) if the socket takes
// them, and returns how many of their bytes went.
func (s *sender) write(head, body []byte) (int, error) {
	if s.raw() == nil {
		return s.writePlain(head, body)
	}
	s.bufs, s.off, s.end = [2][]byte{head, body}, 0, 0
	err := s.run()
	n := len(head) + len(body) - len(s.bufs[0]) - len(s.bufs[1])
	s.bufs = [2][]byte{} // hold no response
	return n, err
}

// run runs send.step until the send is done, it fails, or the client took
// no bytes for the stall.
func (s *sender) run() error {
	s.err = nil
	s.clock.start(time.Now())
	for {
		s.deadline()
		err := s.rc.Write(s.step)
		if err == nil {
			err = s.err
		}
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		d, ok := s.clock.expired(s.stall)
		if !ok {
			return err
		}
		s.nc.SetWriteDeadline(d) // slow, not stalled
		s.moved = time.Now()
	}
}

// deadline moves the write deadline the stall ahead, unless that was done
// less than a second ago (moving it costs a timer update).
func (s *sender) deadline() {
	if s.stall > 0 {
		if now := time.Now(); now.Sub(s.moved) > time.Second {
			s.nc.SetWriteDeadline(now.Add(s.stall))
			s.moved = now
		}
	}
}

// step sends what the socket fd takes of the send; false means "wait
// until it is writable and call again" (as syscall.RawConn.Write's
// callback), true that the send is done or failed (err).
func (s *send) step(fd int) bool {
	for {
		if len(s.bufs[0]) == 0 {
			s.bufs = [2][]byte{s.bufs[1], nil}
		}
		var n int
		var err error
		switch {
		case len(s.bufs[1]) > 0:
			n, err = writev(fd, &s.iov, s.bufs[0], s.bufs[1])
		case len(s.bufs[0]) > 0 && s.off < s.end:
			// The head of a file: with MSG_MORE, so that it leaves in one
			// segment with the body's start.
			n, err = sendMore(fd, s.bufs[0])
		case len(s.bufs[0]) > 0:
			n, err = sockWrite(fd, s.bufs[0])
		case s.off < s.end:
			n, err = sendfile(fd, s.fd, &s.off, int(min(s.end-s.off, 1<<30))) // moves s.off
			if err == nil && n == 0 {
				err = io.ErrUnexpectedEOF // the file shrank under us
			}
		default:
			return true
		}
		switch {
		case err == syscall.EAGAIN:
			s.clock.full()
			return false
		case err == syscall.EINTR:
			continue
		case err != nil:
			s.err = err
			return true
		}
		s.clock.sent(n)
		if len(s.bufs[0]) > 0 { // a write, not sendfile: drop what went
			if n < len(s.bufs[0]) {
				s.bufs[0] = s.bufs[0][n:]
			} else {
				s.bufs = [2][]byte{s.bufs[1][n-len(s.bufs[0]):], nil}
			}
		}
	}
}

// writePlain is write on a connection that is no socket (a test's pipe):
// it shows no wakeups, so each write gets the stall whole.
func (s *sender) writePlain(head, body []byte) (int, error) {
	n := 0
	for _, b := range [2][]byte{head, body} {
		if len(b) == 0 {
			continue
		}
		if s.stall > 0 {
			s.nc.SetWriteDeadline(time.Now().Add(s.stall))
		}
		m, err := s.nc.Write(b)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// copyFile is sendFile where sendfile(2) is not to be had (a connection
// that is no socket, a system without it): the file is read and written
// in chunks, each under the stall rule.
func (s *sender) copyFile(head []byte, fd int, off, end int64) (int64, error) {
	if len(head) > 0 {
		if _, err := s.write(head, nil); err != nil {
			return 0, err
		}
	}
	start := off
	buf := make([]byte, min(end-off, 256<<10))
	for off < end {
		n, err := syscall.Pread(fd, buf[:min(int64(len(buf)), end-off)], off)
		if err != nil {
			return off - start, err
		}
		if n == 0 {
			return off - start, io.ErrUnexpectedEOF
		}
		if _, err := s.write(buf[:n], nil); err != nil {
			return off - start, err
		}
		off += int64(n)
	}
	return off - start, nil
}

// StallConn wraps c so that its writes follow the stall rule of the fast
// path's own (see stallClock): a write may wait stall from the last time
// the client took bytes, and then fails, which makes net/http close the
// connection. A slow but live client is never cut. fastpath.Server wraps
// every connection it hands to its Fallback so; mirrord wraps net/http's
// connections so when the fast path is off. A connection other than TCP
// is returned as it is.
//
// net/http sets no write deadline of its own when its WriteTimeout is 0,
// so nothing else moves the deadline. File bodies still go out by
// sendfile(2) (see ReadFrom).
func StallConn(c net.Conn, stall time.Duration) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		return &stallConn{TCPConn: tc, w: sender{nc: tc, stall: stall}}
	}
	return c
}

type stallConn struct {
	*net.TCPConn
	mu sync.Mutex // holds w; a net.Conn may be written from several goroutines
	w  sender
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.write(p, nil)
}

// fileBodies counts the bodies ReadFrom sent from a file with the fast
// path's sendFile: the tests read it to see that net/http's path keeps
// sendfile(2).
var fileBodies atomic.Int64

// ReadFrom sends a regular file by sendFile, as the fast path sends its
// files (sendfile(2) under the stall rule): an *os.File from its offset
// to its end, or an *io.SectionReader over a descriptor its owner keeps
// open (one with Fd() int, as store.SharedFile, the store's shared
// descriptor of a hot file, which is read at explicit offsets and has no
// offset of its own) from the section's position to its end; either to
// the limit of an io.LimitedReader around it, which is what net/http
// hands its connection for a whole file or a range (after copying the
// first 512 bytes through Write if the head is not out yet). It leaves
// the position and the limit as reading would. Any other reader is
// copied through Write. Without this, net/http would use the TCP
// connection's own ReadFrom, whose sendfile retries after the deadline
// as if any byte were progress.
func (c *stallConn) ReadFrom(r io.Reader) (int64, error) {
	lr, _ := r.(*io.LimitedReader)
	src := r
	if lr != nil {
		src = lr.R
	}
	var n int64
	var err error
	switch src := src.(type) {
	case *os.File:
		n, err = c.sendOSFile(src, lr)
	case *io.SectionReader:
		n, err = c.sendSection(src, lr)
	default:
		return io.Copy(writerOnly{c}, r)
	}
	if errors.Is(err, errNoSendfile) {
		return io.Copy(writerOnly{c}, r)
	}
	if lr != nil {
		lr.N -= n
	}
	return n, err
}

// errNoSendfile: the source is not a regular file; ReadFrom copies it.
var errNoSendfile = errors.New("not a regular file")

// sendOSFile sends f from its offset to its end, or to lr's limit, and
// moves its offset past what it sent.
func (c *stallConn) sendOSFile(f *os.File, lr *io.LimitedReader) (int64, error) {
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, errNoSendfile
	}
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return 0, errNoSendfile // a pipe or a device
	}
	fc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int64
	var sendErr error
	err = fc.Read(func(fd uintptr) bool {
		n, sendErr = c.sendRange(int(fd), pos, info.Size(), lr)
		return true
	})
	if _, serr := f.Seek(pos+n, io.SeekStart); err == nil {
		err = serr
	}
	if err == nil {
		err = sendErr
	}
	return n, err
}

// sendSection sends the rest of sr, or up to lr's limit, when it reads a
// descriptor held open for the call, and moves its position past what it
// sent. The descriptor is used as it is, without the lock an *os.File
// takes for a read: it is shared by every request for the file.
func (c *stallConn) sendSection(sr *io.SectionReader, lr *io.LimitedReader) (int64, error) {
	outer, base, size := sr.Outer()
	held, ok := outer.(interface{ Fd() int })
	if !ok {
		return 0, errNoSendfile
	}
	pos, err := sr.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, errNoSendfile
	}
	n, err := c.sendRange(held.Fd(), base+pos, base+size, lr)
	if _, serr := sr.Seek(pos+n, io.SeekStart); err == nil {
		err = serr
	}
	return n, err
}

// sendRange sends fd from off to end, or to lr's limit, by sendFile. A
// file that ends early is what a read calls EOF: no error.
func (c *stallConn) sendRange(fd int, off, end int64, lr *io.LimitedReader) (int64, error) {
	if lr != nil && lr.N < end-off {
		end = off + max(lr.N, 0)
	}
	if end <= off {
		return 0, nil
	}
	c.mu.Lock()
	n, err := c.w.sendFile(nil, fd, off, end)
	c.mu.Unlock()
	fileBodies.Add(1)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return n, err
}

// writerOnly hides ReadFrom, so io.Copy does not call it again.
type writerOnly struct{ io.Writer }
