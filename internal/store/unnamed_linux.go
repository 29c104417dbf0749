package store

import (
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hasProcFD says whether /proc/self/fd is there, through which an
// unnamed file gets its name (linkat with AT_EMPTY_PATH would need
// CAP_DAC_READ_SEARCH).
var hasProcFD = func() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
}()

// createUnnamed opens an unnamed file (O_TMPFILE) in the folder d, with
// tmpName as its name for the caller's os.Remove, which never matches a
// file. It fails if the file system cannot make one.
func createUnnamed(d *os.File, tmpName string) (*os.File, error) {
	if !hasProcFD {
		return nil, unix.EOPNOTSUPP
	}
	var fd int
	err := fdDo(d, func(dfd int) error {
		var err error
		fd, err = unix.Openat(dfd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return nil, err
	}
	// A blocking descriptor: os.NewFile does not try the poller with it.
	return os.NewFile(uintptr(fd), tmpName), nil
}

// setTimes sets f's times to ts: futimens, that is utimensat with a
// NULL path, which x/sys/unix does not offer.
func setTimes(f *os.File, ts []unix.Timespec) error {
	return fdDo(f, func(fd int) error {
		_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		if errno != 0 {
			return errno
		}
		return nil
	})
}

// linkUnnamed gives the unnamed file f the name name in folder dfd.
func linkUnnamed(f *os.File, dfd int, name string) error {
	return fdDo(f, func(fd int) error {
		return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dfd, name, unix.AT_SYMLINK_FOLLOW)
	})
}
