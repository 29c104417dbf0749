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

// MaxWindow bounds the memory a zstd frame or an xz block can make the
// decoder reserve: both allocate the window (dictionary) their header
// declares, so a 50-byte hostile input could otherwise ask for 512 MiB
// (zstd) or 4 GiB (xz). 128 MiB is libzstd's own default limit
// (ZSTD_WINDOWLOG_LIMIT_DEFAULT = 27) and what zstd --ultra -22 or
// --long=27 declare; makepkg's zstd --ultra -20 (Arch's makepkg.conf)
// declares 32 MiB and xz -9 a 64 MiB dictionary, the default xz -6 8 MiB.
const MaxWindow = 1 << 27

// maxWindow is MaxWindow; fuzz targets lower it to keep executions fast.
var maxWindow atomic.Uint64

func init() { maxWindow.Store(MaxWindow) }

// poolWindow is the largest window of a zstd decoder that goes back to the
// pool: a pooled decoder keeps its ring buffer (window and two blocks), and
// memory kept there is outside any ReadOptions.Reserve. zstd -19 declares
// 8 MiB.
const poolWindow = 8 << 20

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
	c, _ := magic(b)
	return c
}

// SniffCompression tells the compression of a package or database file
// from its first bytes, as the readers here do: ok is false when head
// starts with none of the compressions pacman reads and is no bare tar
// either (no "ustar" at offset 257, so a tar needs 262 bytes of head).
// The name of a package file follows from it: ".pkg.tar" + c.Ext().
func SniffCompression(head []byte) (c Compression, ok bool) {
	if c, ok := magic(head); ok {
		return c, true
	}
	return None, len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar"))
}

// magic tells the compression from its magic bytes; None and false if b
// starts with none of them.
func magic(b []byte) (Compression, bool) {
	switch {
	case bytes.HasPrefix(b, zstdMagic):
		return Zstd, true
	case bytes.HasPrefix(b, xzMagic):
		return Xz, true
	case bytes.HasPrefix(b, gzipMagic):
		return Gzip, true
	case bytes.HasPrefix(b, bzip2Magic):
		return Bzip2, true
	}
	return None, false
}

// Decoders are pooled: building a zstd decoder costs more than decoding a
// small package's .PKGINFO, and a db build reads thousands of packages.
var (
	zstdPool sync.Pool // *zstd.Decoder
	gzipPool sync.Pool // *gzip.Reader
)

// decompress returns a reader of the decompressed stream and a release
// function that must be called once the reader is no longer used. reserve,
// if not nil, is called with the window a zstd frame or an xz block is
// about to allocate (see ReadOptions.Reserve).
func decompress(c Compression, r *bufio.Reader, reserve func(int64) func()) (io.Reader, func(), error) {
	switch c {
	case Zstd:
		// The decoder allocates the first frame's window in full at its
		// first block; a later frame may not declare a larger one.
		window := max(zstdWindow(r), zstd.MinWindowSize)
		if limit := maxWindow.Load(); window > limit {
			return nil, nil, fmt.Errorf("zstd: window of %d bytes exceeds the limit of %d", window, limit)
		}
		done := func() {}
		if reserve != nil {
			done = reserve(int64(window))
		}
		d, _ := zstdPool.Get().(*zstd.Decoder)
		if d == nil {
			var err error
			// Concurrency 1 decodes synchronously: no goroutine reads
			// ahead of what the caller asked for, and none is left behind
			// when the caller stops early.
			d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
			if err != nil {
				done()
				return nil, nil, fmt.Errorf("zstd: %w", err)
			}
		}
		if err := d.ResetWithOptions(r, zstd.WithDecoderMaxWindow(window)); err != nil {
			d.Close()
			done()
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return d, func() {
			_ = d.Reset(nil)
			if window <= poolWindow {
				zstdPool.Put(d)
			} else {
				d.Close()
			}
			d = nil // unreachable before done: its memory may be collected then
			done()
		}, nil
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
		x.reserve = reserve
		return x, x.release, nil
	case Bzip2:
		return bzip2.NewReader(r), func() {}, nil
	case None:
		return r, func() {}, nil
	}
	return nil, nil, fmt.Errorf("unsupported compression %v", c)
}

// zstdWindow is the window that the first frame at the start of br
// declares in its header (RFC 8878, 3.1.1.1), or 0 if the header is cut
// short. A single-segment frame's window is its content size.
func zstdWindow(br *bufio.Reader) uint64 {
	b, _ := br.Peek(18) // magic, descriptor, window, dictionary ID, content size
	if len(b) < 6 {
		return 0
	}
	fhd := b[4]
	if fhd&0x20 == 0 { // not single-segment: the window descriptor
		exp, mantissa := uint64(b[5]>>3), uint64(b[5]&7)
		base := uint64(1) << (10 + exp)
		return base + base/8*mantissa
	}
	pos := 5 + [4]int{0, 1, 2, 4}[fhd&3]
	size := [4]int{1, 2, 4, 8}[fhd>>6]
	if len(b) < pos+size {
		return 0
	}
	var fcs uint64
	for i := size - 1; i >= 0; i-- {
		fcs = fcs<<8 | uint64(b[pos+i])
	}
	if size == 2 {
		fcs += 256
	}
	return fcs
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
