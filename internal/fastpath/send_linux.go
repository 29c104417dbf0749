package fastpath

import (
	"syscall"
	"unsafe"
)

// sendFile sends head and then fd from off to end, and returns how many
// of the file's bytes went: the head with MSG_MORE, so that it leaves in
// one segment with the body's start, the body by sendfile(2) from the
// page cache, without copying it through user space (which was a quarter
// of the CPU of a 50 KiB hit); under the stall rule.
func (s *sender) sendFile(head []byte, fd int, off, end int64) (int64, error) {
	if s.raw() == nil {
		return s.copyFile(head, fd, off, end)
	}
	s.bufs, s.fd, s.off, s.end = [2][]byte{head, nil}, fd, off, end
	err := s.run()
	s.bufs = [2][]byte{}
	return s.off - off, err
}

// The socket calls of a send and of the event loop's reads are raw
// syscalls, which do not tell Go's scheduler they are in the kernel: on
// a non-blocking socket they never wait, but on loopback a write runs the
// receiver's side of TCP too, and sysmon, seeing a P "in a syscall" that
// long, handed it off and woke every 20 µs to look again, a tenth of a
// busy server's CPU. sendfile(2) may wait for the disk: see
// rawSendfileMax.

func sockWrite(fd int, b []byte) (int, error) {
	if raceEnabled {
		return syscall.Write(fd, b)
	}
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return rawResult(n, errno)
}

func sockRead(fd int, b []byte) (int, error) {
	if raceEnabled {
		return syscall.Read(fd, b)
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return rawResult(n, errno)
}

// sendMore sends b with MSG_MORE: more follows at once, so the kernel
// holds it for the next send's bytes.
func sendMore(fd int, b []byte) (int, error) {
	if raceEnabled {
		return syscall.SendmsgN(fd, b, nil, nil, syscall.MSG_MORE)
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_MORE, 0, 0)
	return rawResult(n, errno)
}

func rawResult(n uintptr, errno syscall.Errno) (int, error) {
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// rawSendfileMax is the most sendfile sends as a raw syscall: reading
// that much of a file that is not in the page cache takes a disk a few
// milliseconds at worst, which is how long the P stays with the call
// (see sockWrite). Larger sends are what the scheduler knows of, which
// costs them little.
const rawSendfileMax = 256 << 10

func sendfile(sock, fd int, off *int64, n int) (int, error) {
	if n > rawSendfileMax || raceEnabled {
		return syscall.Sendfile(sock, fd, off, n)
	}
	m, _, errno := syscall.RawSyscall6(syscall.SYS_SENDFILE, uintptr(sock), uintptr(fd), uintptr(unsafe.Pointer(off)), uintptr(n), 0, 0)
	return rawResult(m, errno)
}

// writev writes a and then b, both not empty, in one writev(2). iov is
// the caller's, so that it costs no allocation; it is cleared after.
func writev(fd int, iov *[2]syscall.Iovec, a, b []byte) (int, error) {
	iov[0].Base, iov[1].Base = &a[0], &b[0]
	iov[0].SetLen(len(a))
	iov[1].SetLen(len(b))
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), 2)
	*iov = [2]syscall.Iovec{} // hold no response
	return rawResult(n, errno)
}
