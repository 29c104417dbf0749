package fastpath

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sendState is the response sendFile is sending: what is left of the
// head, then the file from off to size.
type sendState struct {
	rc        syscall.RawConn    // the connection's, made once
	step      func(uintptr) bool // c.sendStep, made once
	head      []byte
	fd        int
	off, size int64
	sent      int64 // bytes sent in all
	acked     int64 // of those, how many the client had taken when the socket last filled up
	err       error
}

// sendFile sends head and then the first size bytes of fd: the head with
// MSG_MORE, so that it leaves in one segment with the body's start, the
// body by sendfile(2) from the page cache, without copying it through
// user space (which was a quarter of the CPU of a 50 KiB hit).
func (c *conn) sendFile(head []byte, fd int, size int64) error {
	st := &c.send
	if st.rc == nil {
		sc, ok := c.nc.(syscall.Conn)
		if !ok {
			return c.copyFile(head, fd, size)
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return err
		}
		st.rc, st.step = rc, c.sendStep
	}
	st.head, st.fd, st.off, st.size, st.err = head, fd, 0, size, nil
	for {
		c.writeDeadline()
		err := st.rc.Write(st.step)
		if err == nil {
			err = st.err
		}
		if err == nil {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && st.reading() {
			c.writeSet = time.Time{} // slow, not stalled: WriteStall more
			continue
		}
		return err
	}
}

// reading reports whether the client took bytes since the socket last
// filled up. Not "did a send make progress": the first burst fills the
// kernel's buffers at once, and a client that then never reads would get
// a second stall period; and the kernel wakes a writer only once a good
// part of its buffer is free, so a slow reader can go a whole stall
// period without a send and still be reading.
func (st *sendState) reading() bool {
	acked, ok := int64(0), false
	st.rc.Control(func(fd uintptr) { acked, ok = st.taken(int(fd)) })
	return !ok || acked > st.acked
}

// taken returns how many of the bytes sent the client's side has taken
// (acknowledged): sent minus what is still queued (SIOCOUTQ).
func (st *sendState) taken(fd int) (int64, bool) {
	q, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 0, false
	}
	return st.sent - int64(q), true
}

// wait records, as the socket fills up, what the client has taken.
func (st *sendState) wait(fd int) bool {
	st.acked, _ = st.taken(fd)
	return false
}

// sendStep sends what the socket takes; false means "wait until it is
// writable and call again" (syscall.RawConn.Write).
func (c *conn) sendStep(s uintptr) bool {
	st := &c.send
	for len(st.head) > 0 {
		flags := 0
		if st.size > 0 {
			flags = syscall.MSG_MORE
		}
		n, err := syscall.SendmsgN(int(s), st.head, nil, nil, flags)
		switch {
		case err == syscall.EAGAIN:
			return st.wait(int(s))
		case err == syscall.EINTR:
			continue
		case err != nil:
			st.err = err
			return true
		}
		st.head = st.head[n:]
		st.sent += int64(n)
	}
	for st.off < st.size {
		n, err := syscall.Sendfile(int(s), st.fd, &st.off, int(min(st.size-st.off, 1<<30)))
		switch {
		case err == syscall.EAGAIN:
			return st.wait(int(s))
		case err == syscall.EINTR:
			continue
		case err != nil:
			st.err = err
			return true
		case n == 0:
			st.err = io.ErrUnexpectedEOF // the file shrank under us
			return true
		}
		st.sent += int64(n)
	}
	return true
}
