package alpm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"slices"
	stdsync "sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestZstdWindow reads the window of frame headers as the zstd 1.5.4 CLI
// writes them (bytes copied from its output).
func TestZstdWindow(t *testing.T) {
	cases := []struct {
		name   string
		header []byte
		want   uint64
	}{
		{"-19 from a pipe", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x68, 0, 0}, 8 << 20},
		{"makepkg's -T0 --ultra -20 from a pipe", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x78, 0, 0}, 32 << 20},
		{"--ultra -22 or --long=27 from a pipe", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x88, 0, 0}, 128 << 20},
		{"mantissa", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x7b, 0, 0}, 32<<20 + 3*(4<<20)},
		{"single segment, 1-byte size", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x40, 0, 0}, 0x40},
		{"single segment, 2-byte size", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x60, 0x00, 0x01, 0}, 256 + 256},
		{"single segment, 4-byte size, dictionary ID", []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa1, 0x07, 0xc6, 0x2d, 0x00, 0x01}, 0x01002dc6},
		{"cut short", []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0xc6}, 0},
	}
	for _, c := range cases {
		if got := zstdWindow(bufioReader(c.header)); got != c.want {
			t.Errorf("%s: zstdWindow(% x) = %d, want %d", c.name, c.header, got, c.want)
		}
	}
}

// reservations records the calls of a ReadOptions.Reserve.
type reservations struct {
	mu       stdsync.Mutex
	sizes    []int64
	released int
}

func (r *reservations) reserve(n int64) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sizes = append(r.sizes, n)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.released++
	}
}

func zstdWith(t *testing.T, data []byte, window int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, zstd.WithWindowSize(window), zstd.WithEncoderConcurrency(1))
	must(t, err)
	_, err = w.Write(data)
	must(t, err)
	must(t, w.Close())
	return b.Bytes()
}

// TestReserve: every read reserves the window its stream declares before
// decoding, no more than an xz block's stated size, and returns it.
func TestReserve(t *testing.T) {
	payload := make([]byte, 256<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	pi := &PKGINFO{Package: Package{Name: "win", Version: "1-1", Arch: "any"}}
	var tarball bytes.Buffer
	must(t, WritePackage(&tarball, pi, []PackageFile{{Name: "usr/share/win", Body: payload}}, None))
	tarSize := int64(tarball.Len())
	cases := []struct {
		name string
		data func(t *testing.T) []byte
		want int64
	}{
		{"zstd 32 MiB window", func(t *testing.T) []byte { return zstdWith(t, tarball.Bytes(), 32<<20) }, 32 << 20},
		{"zstd 1 MiB window", func(t *testing.T) []byte { return zstdWith(t, tarball.Bytes(), 1<<20) }, 1 << 20},
		{"xz 8 MiB dictionary", func(t *testing.T) []byte { return xzTool(t, tarball.Bytes(), "--lzma2=dict=8MiB") }, 8 << 20},
		{"xz 8 MiB dictionary, sizes in the header", func(t *testing.T) []byte { return xzTool(t, tarball.Bytes(), "-T2", "--lzma2=dict=8MiB") }, tarSize},
		{"gzip", func(t *testing.T) []byte {
			return buildPackage(t, pi, []PackageFile{{Name: "usr/share/win", Body: payload}}, Gzip)
		}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := c.data(t)
			for _, list := range []bool{false, true} {
				var r reservations
				p, err := ReadPackage(bytes.NewReader(data), ReadOptions{ListFiles: list, Reserve: r.reserve})
				if err != nil || p.Name != "win" {
					t.Fatalf("ReadPackage(ListFiles %v) = %v, %v", list, p, err)
				}
				want := []int64{c.want}
				if c.want < 0 {
					want = nil
				}
				if !slices.Equal(r.sizes, want) || r.released != len(want) {
					t.Errorf("ReadPackage(ListFiles %v) reserved %v and released %d, want %v released", list, r.sizes, r.released, want)
				}
			}
			var r reservations
			if p, err := ReadPackageInfo(bytes.NewReader(data), ReadOptions{Reserve: r.reserve}); err != nil || p.Name != "win" {
				t.Fatalf("ReadPackageInfo = %v, %v", p, err)
			}
			if r.released != len(r.sizes) {
				t.Errorf("ReadPackageInfo reserved %v and released %d", r.sizes, r.released)
			}
		})
	}
}

// TestXzBlockSize: a block that decodes to more or less than its header
// states is refused, since its dictionary was sized by that statement.
func TestXzBlockSize(t *testing.T) {
	data := xzTool(t, bytes.Repeat([]byte("abcdefgh"), 1000), "-T2")
	// The stream header (12 bytes), then the block header: its size,
	// flags, the compressed size if flag 0x40, the uncompressed size
	// (flag 0x80; 8000 is two varint bytes), the filter, the CRC32.
	hdr := data[12 : 12+(int(data[12])+1)*4]
	flags := hdr[1]
	if flags&0x80 == 0 {
		t.Fatalf("xz -T2 wrote no uncompressed size (flags %#x)", flags)
	}
	rest := hdr[2:]
	if flags&0x40 != 0 {
		_, n := binary.Uvarint(rest)
		rest = rest[n:]
	}
	if size, n := binary.Uvarint(rest); size != 8000 || n != 2 {
		t.Fatalf("block header size %d (%d bytes), want 8000", size, n)
	}
	for _, lie := range []uint64{7999, 8001} {
		bad := slices.Clone(data)
		bh := bad[12 : 12+len(hdr)]
		off := len(hdr) - len(rest)
		binary.PutUvarint(bh[off:], lie)
		binary.LittleEndian.PutUint32(bh[len(bh)-4:], crc32.ChecksumIEEE(bh[:len(bh)-4]))
		if _, err := readXz(bad); err == nil || !errors.Is(err, errXzFormat) {
			t.Errorf("readXz(block stating %d of 8000 bytes) = %v, want a format error", lie, err)
		}
	}
	if got, err := readXz(data); err != nil || len(got) != 8000 {
		t.Errorf("readXz(the true statement) = %d bytes, %v", len(got), err)
	}
}

// TestFileListLimits: MaxFiles and MaxFileBytes refuse a longer list with
// ErrFileList, naming the cap.
func TestFileListLimits(t *testing.T) {
	pi := &PKGINFO{Package: Package{Name: "many", Version: "1-1", Arch: "any"}}
	var files []PackageFile
	for i := range 10 {
		files = append(files, PackageFile{Name: fmt.Sprintf("usr/share/f%d", i), Body: []byte("x")})
	}
	data := buildPackage(t, pi, files, Zstd)
	// 10 files and their folders usr/, usr/share/: 12 names of 146 bytes
	// with their newlines.
	cases := []struct {
		name      string
		opts      ReadOptions
		wantErr   string
		wantFiles int
	}{
		{"defaults", ReadOptions{}, "", 12},
		{"exactly MaxFiles", ReadOptions{MaxFiles: 12}, "", 12},
		{"one over MaxFiles", ReadOptions{MaxFiles: 11}, "more than 11 files", 0},
		{"exactly MaxFileBytes", ReadOptions{MaxFileBytes: 146}, "", 12},
		{"one over MaxFileBytes", ReadOptions{MaxFileBytes: 145}, "more than 145 bytes", 0},
	}
	for _, c := range cases {
		c.opts.ListFiles = true
		p, err := ReadPackage(bytes.NewReader(data), c.opts)
		if c.wantErr == "" {
			if err != nil || len(p.Files) != c.wantFiles {
				t.Errorf("%s: ReadPackage = %v, want %d files", c.name, err, c.wantFiles)
			}
			continue
		}
		if !errors.Is(err, ErrFileList) || !bytes.Contains([]byte(err.Error()), []byte(c.wantErr)) {
			t.Errorf("%s: ReadPackage error = %v, want ErrFileList with %q", c.name, err, c.wantErr)
		}
	}
	// Without ListFiles there is no list to cap.
	if _, err := ReadPackageInfo(bytes.NewReader(data), ReadOptions{MaxFiles: 1}); err != nil {
		t.Errorf("ReadPackageInfo(MaxFiles 1) = %v, want no list read", err)
	}
}

// countReader counts what is read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestReadPackageInfo: the .PKGINFO is read without reading the rest.
func TestReadPackageInfo(t *testing.T) {
	payload := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	pi := &PKGINFO{Package: Package{Name: "early", Version: "2:1.0-3", Arch: "x86_64", Depends: []string{"glibc"}}}
	for _, c := range []Compression{Zstd, Gzip, Xz} {
		data := buildPackage(t, pi, []PackageFile{{Name: "usr/share/big", Body: payload}}, c)
		cr := &countReader{r: bytes.NewReader(data)}
		got, err := ReadPackageInfo(cr, ReadOptions{})
		if err != nil || got.Name != "early" || got.Version != "2:1.0-3" || !slices.Equal(got.Depends, []string{"glibc"}) {
			t.Fatalf("%v: ReadPackageInfo = %+v, %v", c, got, err)
		}
		if cr.n > int64(len(data))/4 {
			t.Errorf("%v: ReadPackageInfo read %d of %d bytes, want it to stop at .PKGINFO", c, cr.n, len(data))
		}
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
