package web

import (
	"io/fs"
	"syscall"
)

// statIDs are the device, inode and ctime (unix ns) of fi.
func statIDs(fi fs.FileInfo) (dev, ino uint64, ctime int64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0
	}
	return uint64(st.Dev), st.Ino, st.Ctim.Nano()
}
