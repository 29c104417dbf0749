package fastpath

import (
	"io"
	"syscall"
)

// copyFile is sendFile's fallback for a connection that is no socket:
// the file is read and written in chunks.
func (c *conn) copyFile(head []byte, fd int, size int64) error {
	if err := c.write(head, nil); err != nil {
		return err
	}
	buf := make([]byte, min(size, 256<<10))
	for off := int64(0); off < size; {
		n, err := syscall.Pread(fd, buf[:min(int64(len(buf)), size-off)], off)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		if err := c.write(buf[:n], nil); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}
