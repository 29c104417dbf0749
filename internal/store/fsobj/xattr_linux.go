package fsobj

import (
	"os"

	"golang.org/x/sys/unix"
)

// setXattr and getXattr work on the open file, not its name, so the
// metadata is always that of the bytes in hand.
func setXattr(f *os.File, name string, val []byte) error {
	return control(f, func(fd int) error { return unix.Fsetxattr(fd, name, val, 0) })
}

func getXattr(f *os.File, name string) ([]byte, error) {
	var out []byte
	err := control(f, func(fd int) error {
		buf := make([]byte, 512)
		for {
			n, err := unix.Fgetxattr(fd, name, buf)
			if err == unix.ERANGE {
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
