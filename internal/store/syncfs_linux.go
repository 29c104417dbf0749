package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncfs syncs the file system that holds f: one call for any number of
// files, where an fsync each would queue one journal commit apiece.
func syncfs(f *os.File) error {
	return fdDo(f, unix.Syncfs)
}
