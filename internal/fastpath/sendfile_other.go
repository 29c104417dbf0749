//go:build !linux

package fastpath

type sendState struct{}

func (c *conn) sendFile(head []byte, fd int, size int64) error {
	return c.copyFile(head, fd, size)
}
