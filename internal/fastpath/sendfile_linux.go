package fastpath

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"
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
	clock     StallClock
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
	st.clock.Start(time.Now())
	for {
		c.writeDeadline()
		err := st.rc.Write(st.step)
		if err == nil {
			err = st.err
		}
		if err == nil {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if d, ok := st.clock.Expired(c.s.WriteStall); ok {
				c.nc.SetWriteDeadline(d) // slow, not stalled
				c.writeSet = time.Now()
				continue
			}
		}
		return err
	}
}

// wait notes that the socket is full (see StallClock).
func (st *sendState) wait() bool {
	st.clock.Full()
	return false
}

// progress notes a send of n bytes.
func (st *sendState) progress(n int) {
	st.sent += int64(n)
	st.clock.Sent(n)
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
			return st.wait()
		case err == syscall.EINTR:
			continue
		case err != nil:
			st.err = err
			return true
		}
		st.head = st.head[n:]
		st.progress(n)
	}
	for st.off < st.size {
		n, err := syscall.Sendfile(int(s), st.fd, &st.off, int(min(st.size-st.off, 1<<30)))
		switch {
		case err == syscall.EAGAIN:
			return st.wait()
		case err == syscall.EINTR:
			continue
		case err != nil:
			st.err = err
			return true
		case n == 0:
			st.err = io.ErrUnexpectedEOF // the file shrank under us
			return true
		}
		st.progress(n)
	}
	return true
}
