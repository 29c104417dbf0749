package alpm

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression is the stream compression around a tar archive. The zero
// value is Gzip because that is what repo-add writes by default.
type Compression int

const (
	Gzip Compression = iota
	Zstd
	Xz
	Bzip2
	None
)

// String names the compression as a tool would.
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Xz:
		return "xz"
	case Bzip2:
		return "bzip2"
	case None:
		return "none"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// Ext is the file name suffix after ".tar" for c: ".gz", ".zst", ".xz",
// ".bz2", or "" for None.
func (c Compression) Ext() string {
	switch c {
	case Gzip:
		return ".gz"
	case Zstd:
		return ".zst"
	case Xz:
		return ".xz"
	case Bzip2:
		return ".bz2"
	}
	return ""
}

// maxWindow bounds the memory a zstd frame or an xz block can make the
// decoder reserve: both allocate the window (dictionary) their header
// declares, so a 50-byte hostile input could otherwise ask for 512 MiB
// (zstd) or 4 GiB (xz). 128 MiB is libzstd's own default limit
// (ZSTD_WINDOWLOG_LIMIT_DEFAULT = 27); makepkg's zstd --ultra -20 uses
// 64 MiB and xz -9 a 64 MiB dictionary. Fuzz targets lower it to keep
// executions fast.
var maxWindow atomic.Uint64

func init() { maxWindow.Store(1 << 27) }

var (
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	gzipMagic  = []byte{0x1f, 0x8b}
	bzip2Magic = []byte{'B', 'Z', 'h'}
)

// sniff tells the compression from the first bytes of br without consuming
// them; anything unrecognised is taken as a bare tar, which the tar reader
// then accepts or rejects.
func sniff(br *bufio.Reader) Compression {
	b, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(b, zstdMagic):
		return Zstd
	case bytes.HasPrefix(b, xzMagic):
		return Xz
	case bytes.HasPrefix(b, gzipMagic):
		return Gzip
	case bytes.HasPrefix(b, bzip2Magic):
		return Bzip2
	}
	return None
}

// Decoders are pooled: building a zstd decoder costs more than decoding a
// small package's .PKGINFO, and a db build reads thousands of packages.
var (
	zstdPool sync.Pool // *zstd.Decoder
	gzipPool sync.Pool // *gzip.Reader
)

// decompress returns a reader of the decompressed stream and a release
// function that must be called once the reader is no longer used.
func decompress(c Compression, r io.Reader) (io.Reader, func(), error) {
	switch c {
	case Zstd:
		d, _ := zstdPool.Get().(*zstd.Decoder)
		if d == nil {
			var err error
			// Concurrency 1 decodes synchronously: no goroutine reads
			// ahead of what the caller asked for, and none is left behind
			// when the caller stops early.
			d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
			if err != nil {
				return nil, nil, fmt.Errorf("zstd: %w", err)
			}
		}
		if err := d.ResetWithOptions(r, zstd.WithDecoderMaxWindow(maxWindow.Load())); err != nil {
			d.Close()
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return d, func() { _ = d.Reset(nil); zstdPool.Put(d) }, nil
	case Gzip:
		z, _ := gzipPool.Get().(*gzip.Reader)
		var err error
		if z == nil {
			z, err = gzip.NewReader(r)
		} else {
			err = z.Reset(r)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return z, func() { gzipPool.Put(z) }, nil
	case Xz:
		x, err := newXzReader(r)
		if err != nil {
			return nil, nil, err
		}
		return x, func() {}, nil
	case Bzip2:
		return bzip2.NewReader(r), func() {}, nil
	case None:
		return r, func() {}, nil
	}
	return nil, nil, fmt.Errorf("unsupported compression %v", c)
}

// compressor wraps w in the writer for c; Close flushes the compressed stream
// but does not close w.
func compressor(c Compression, w io.Writer) (io.WriteCloser, error) {
	switch c {
	case Gzip:
		// Level 6 is gzip's default, what repo-add's "gzip -c -f -n" gives.
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	case None:
		return nopWriteCloser{w}, nil
	}
	return nil, fmt.Errorf("writing %v is not supported (use gzip, zstd or none)", c)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
