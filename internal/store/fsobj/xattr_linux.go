package fsobj

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// setXattr and getXattr work on the open file, not its name, so the
// metadata is always that of the bytes in hand.
func setXattr(f *os.File, name string, val []byte) error {
	return control(f, func(fd int) error { return unix.Fsetxattr(fd, name, val, 0) })
}

// maxXattr bounds the metadata read back: ours is well under 1 KiB,
// and a larger one was written by someone else.
const maxXattr = 8 << 10

func getXattr(f *os.File, name string) ([]byte, error) {
	var out []byte
	err := control(f, func(fd int) error {
		buf := make([]byte, 512)
		for {
			n, err := unix.Fgetxattr(fd, name, buf)
			if err == unix.ERANGE {
				if len(buf) >= maxXattr {
					return fmt.Errorf("%s: more than %d bytes", name, maxXattr)
				}
				buf = make([]byte, 2*len(buf))
				continue
			}
			if err != nil {
				return err
			}
			out = buf[:n]
			return nil
		}
	})
	return out, err
}

func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
