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

const msgMore = syscall.MSG_MORE

func sendfile(sock, fd int, off *int64, n int) (int, error) {
	return syscall.Sendfile(sock, fd, off, n)
}

// writev writes a and then b, both not empty, in one writev(2). iov is
// the caller's, so that it costs no allocation; it is cleared after.
func writev(fd int, iov *[2]syscall.Iovec, a, b []byte) (int, error) {
	iov[0].Base, iov[1].Base = &a[0], &b[0]
	iov[0].SetLen(len(a))
	iov[1].SetLen(len(b))
	n, _, errno := syscall.Syscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), 2)
	*iov = [2]syscall.Iovec{} // hold no response
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
