//go:build !linux

package fastpath

import "syscall"

// sendFile sends head and then fd from off to end, and returns how many
// of the file's bytes went. Only Linux's sendfile(2) is used: here the
// file is copied, under the same stall rule.
func (s *sender) sendFile(head []byte, fd int, off, end int64) (int64, error) {
	return s.copyFile(head, fd, off, end)
}

func sockWrite(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }

func sendMore(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }

func sendfile(sock, fd int, off *int64, n int) (int, error) {
	return 0, syscall.ENOSYS // never called: sendFile copies
}

// writev writes what the socket takes of a; b goes in the next call.
func writev(fd int, iov *[2]syscall.Iovec, a, b []byte) (int, error) {
	return syscall.Write(fd, a)
}
