package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestCheckedReader: a good body passes whole; a bad one never gets all
// its declared bytes out, so a backend that commits once it has the
// declared size (a PUT's Content-Length) is never handed a whole bad body.
func TestCheckedReader(t *testing.T) {
	b := []byte("0123456789")
	sum := sha256.Sum256(b)
	meta := ObjectMeta{Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
	for _, tc := range []struct {
		name string
		r    io.Reader
		meta ObjectMeta
		ok   bool
	}{
		{"good", bytes.NewReader(b), meta, true},
		{"good, a byte a read", iotest.OneByteReader(bytes.NewReader(b)), meta, true},
		{"longer", strings.NewReader(string(b) + "x"), meta, false},
		{"longer, a byte a read", iotest.OneByteReader(strings.NewReader(string(b) + "x")), meta, false},
		{"shorter", bytes.NewReader(b[:9]), meta, false},
		{"other bytes", strings.NewReader("0123456780"), meta, false},
		{"error after the last byte", io.MultiReader(bytes.NewReader(b), iotest.ErrReader(errors.New("reset"))), meta, false},
		{"empty, good", strings.NewReader(""), ObjectMeta{SHA256: hex.EncodeToString(sha256.New().Sum(nil))}, true},
		{"empty, but a byte", strings.NewReader("x"), ObjectMeta{SHA256: hex.EncodeToString(sha256.New().Sum(nil))}, false},
	} {
		got, err := io.ReadAll(CheckedReader("k", tc.r, tc.meta))
		if tc.ok {
			if err != nil || int64(len(got)) != tc.meta.Size {
				t.Errorf("%s: read %d bytes, %v; want %d bytes, nil", tc.name, len(got), err, tc.meta.Size)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", tc.name)
		}
		if tc.meta.Size > 0 && int64(len(got)) >= tc.meta.Size {
			t.Errorf("%s: %d bytes out before the error, want fewer than %d", tc.name, len(got), tc.meta.Size)
		}
	}
}
