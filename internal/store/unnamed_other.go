//go:build !linux

package store

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

var errNoUnnamed = errors.New("unnamed files are Linux only")

func createUnnamed(d *os.File, tmpName string) (*os.File, error) { return nil, errNoUnnamed }

func setTimes(f *os.File, ts []unix.Timespec) error { return errNoUnnamed }

func linkUnnamed(f *os.File, dfd int, name string) error { return errNoUnnamed }
