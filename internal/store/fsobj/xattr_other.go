//go:build !linux

package fsobj

import (
	"errors"
	"os"
)

// Extended attributes are used through Linux's calls only, for now.
func setXattr(f *os.File, name string, val []byte) error { return errors.ErrUnsupported }

func getXattr(f *os.File, name string) ([]byte, error) { return nil, errors.ErrUnsupported }
