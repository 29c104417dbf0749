package alpm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// xzReader reads the .xz container itself and hands each block's LZMA2 data
// to ulikunitz/xz/lzma. ulikunitz/xz's own reader allocates whatever
// dictionary a block header declares, up to 4 GiB, so a 60-byte hostile
// file could make the process allocate gigabytes; here a block whose
// dictionary exceeds maxWindow is refused before anything is allocated,
// and a block whose header gives its uncompressed size (xz -T writes it)
// gets a dictionary no larger than that: a block cannot refer further back
// than its own start, so a 5 MB package made with xz -9 takes 5 MB, not
// 64 MiB, and the size is then checked.
// Supported: LZMA2 as the only filter (what xz and makepkg write), checks
// none, CRC32, CRC64 and SHA-256 (verified), several blocks, several
// concatenated streams, stream padding.
type xzReader struct {
	br    *bufio.Reader
	cr    countingReader // br counted, for block padding
	block io.Reader      // current block's LZMA2 reader; nil between blocks
	check byte           // check type of the current stream
	sum   hash.Hash      // running check of the current block, or nil
	left  int64          // bytes the block header says are left, or -1
	err   error

	reserve  func(int64) func() // see ReadOptions.Reserve; nil: none
	reserved uint64             // the dictionary bytes reserved
	done     func()             // returns them; nil before the first block
}

// release returns the reservation of the dictionary, once the reader is no
// longer used.
func (x *xzReader) release() {
	x.block = nil // unreachable before done: its dictionary may be collected then
	if x.done != nil {
		x.done()
		x.done = nil
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

var (
	errXzFormat   = errors.New("xz: malformed stream")
	crc64Table    = crc64.MakeTable(crc64.ECMA)
	xzFooterMagic = []byte{'Y', 'Z'}
)

func newXzReader(r io.Reader) (*xzReader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	x := &xzReader{br: br}
	x.cr.r = br
	if err := x.streamHeader(); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *xzReader) Read(p []byte) (int, error) {
	for x.err == nil {
		if x.block == nil {
			x.err = x.nextBlock()
			continue
		}
		n, err := x.block.Read(p)
		if n > 0 && x.sum != nil {
			x.sum.Write(p[:n])
		}
		if x.left >= 0 {
			if x.left -= int64(n); x.left < 0 || (err == io.EOF && x.left != 0) {
				x.err = fmt.Errorf("%w: block size differs from its header's", errXzFormat)
				return 0, x.err
			}
		}
		if err == io.EOF {
			x.err = x.endBlock()
			if x.err == nil {
				x.block = nil
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			x.err = fmt.Errorf("xz: %w", err)
		}
		return n, nil
	}
	return 0, x.err
}

func (x *xzReader) streamHeader() error {
	var h [12]byte
	if _, err := io.ReadFull(x.br, h[:]); err != nil {
		return fmt.Errorf("xz: stream header: %w", noEOF(err))
	}
	if !bytes.Equal(h[:6], xzMagic) || h[6] != 0 || h[7] > 0x0f ||
		crc32.ChecksumIEEE(h[6:8]) != binary.LittleEndian.Uint32(h[8:]) {
		return fmt.Errorf("%w: bad stream header", errXzFormat)
	}
	x.check = h[7]
	return nil
}

// checkSize is the size in bytes of an xz check of type t.
func checkSize(t byte) int {
	if t == 0 {
		return 0
	}
	return 4 << ((t - 1) / 3)
}

func (x *xzReader) newCheck() hash.Hash {
	switch x.check {
	case 1:
		return crc32.NewIEEE()
	case 4:
		return crc64.New(crc64Table)
	case 10:
		return sha256.New()
	}
	return nil
}

// nextBlock reads a block header and starts its LZMA2 reader, or, at the
// index, skips index and footer and returns io.EOF or moves to the next
// concatenated stream.
func (x *xzReader) nextBlock() error {
	b, err := x.br.ReadByte()
	if err != nil {
		return fmt.Errorf("xz: %w", noEOF(err))
	}
	if b == 0 {
		return x.indexAndFooter()
	}
	hdr := make([]byte, (int(b)+1)*4)
	hdr[0] = b
	if _, err := io.ReadFull(x.br, hdr[1:]); err != nil {
		return fmt.Errorf("xz: block header: %w", noEOF(err))
	}
	body := hdr[:len(hdr)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(hdr[len(hdr)-4:]) {
		return fmt.Errorf("%w: block header checksum", errXzFormat)
	}
	flags := body[1]
	if flags&0x3c != 0 {
		return fmt.Errorf("%w: reserved block flags", errXzFormat)
	}
	rest := body[2:]
	x.left = -1
	if flags&0x40 != 0 { // compressed size
		if _, rest, err = uvarint(rest); err != nil {
			return err
		}
	}
	if flags&0x80 != 0 { // uncompressed size
		var size uint64
		if size, rest, err = uvarint(rest); err != nil {
			return err
		}
		if size > 1<<62 {
			return fmt.Errorf("%w: block size %d", errXzFormat, size)
		}
		x.left = int64(size)
	}
	nfilters := int(flags&3) + 1
	if nfilters != 1 {
		return fmt.Errorf("xz: %d filters in a block: only plain LZMA2 is supported", nfilters)
	}
	id, rest, err := uvarint(rest)
	if err != nil {
		return err
	}
	psize, rest, err := uvarint(rest)
	if err != nil {
		return err
	}
	if id != 0x21 || psize != 1 || len(rest) < 1 {
		return fmt.Errorf("xz: filter %#x: only LZMA2 is supported", id)
	}
	for _, c := range rest[1:] {
		if c != 0 {
			return fmt.Errorf("%w: block header padding", errXzFormat)
		}
	}
	p := rest[0]
	if p > 40 {
		return fmt.Errorf("%w: dictionary size %d", errXzFormat, p)
	}
	dict := uint64(1<<32 - 1)
	if p < 40 {
		dict = uint64(2|p&1) << (p/2 + 11)
	}
	if limit := maxWindow.Load(); dict > limit {
		return fmt.Errorf("xz: dictionary of %d bytes exceeds the limit of %d", dict, limit)
	}
	if x.left >= 0 && uint64(x.left) < dict {
		dict = uint64(x.left)
	}
	if dict < lzma.MinDictCap {
		dict = lzma.MinDictCap
	}
	if dict > x.reserved || dict > poolWindow {
		// The first block, or one that needs more than those before it,
		// or a large one: the reservation is returned and taken again, so
		// that the dictionary of the block before, garbage by now, may be
		// collected in between (see ReadOptions.Reserve).
		x.release()
		if x.reserve != nil {
			x.done = x.reserve(int64(dict))
		}
		x.reserved = dict
	}
	x.cr.n = 0
	r2, err := lzma.Reader2Config{DictCap: int(dict)}.NewReader2(&x.cr)
	if err != nil {
		return fmt.Errorf("xz: %w", err)
	}
	x.block = r2
	x.sum = x.newCheck()
	x.cr.n += int64(len(hdr)) // padding aligns header + compressed data
	return nil
}

// endBlock reads the block padding and check after the LZMA2 end marker.
func (x *xzReader) endBlock() error {
	for ; x.cr.n%4 != 0; x.cr.n++ {
		c, err := x.br.ReadByte()
		if err != nil {
			return fmt.Errorf("xz: %w", noEOF(err))
		}
		if c != 0 {
			return fmt.Errorf("%w: block padding", errXzFormat)
		}
	}
	sum := make([]byte, checkSize(x.check))
	if _, err := io.ReadFull(x.br, sum); err != nil {
		return fmt.Errorf("xz: block check: %w", noEOF(err))
	}
	if x.sum != nil {
		got := x.sum.Sum(nil)
		if x.check != 10 {
			// CRC32 and CRC64 are stored little-endian.
			for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
				got[i], got[j] = got[j], got[i]
			}
		}
		if !bytes.Equal(got, sum) {
			return fmt.Errorf("xz: block check mismatch")
		}
	}
	return nil
}

// indexAndFooter skips the index (its indicator byte already read) and the
// stream footer, then either ends (io.EOF) or starts a following stream.
func (x *xzReader) indexAndFooter() error {
	n, err := binary.ReadUvarint(x.br)
	if err != nil {
		return fmt.Errorf("xz: index: %w", noEOF(err))
	}
	size := 1 + uvarintLen(n)
	for i := uint64(0); i < n; i++ {
		for range 2 {
			v, err := binary.ReadUvarint(x.br)
			if err != nil {
				return fmt.Errorf("xz: index: %w", noEOF(err))
			}
			size += uvarintLen(v)
		}
	}
	// Index padding to 4, CRC32, then the 12-byte footer.
	skip := (4-size%4)%4 + 4 + 12
	footer := make([]byte, skip)
	if _, err := io.ReadFull(x.br, footer); err != nil {
		return fmt.Errorf("xz: footer: %w", noEOF(err))
	}
	if !bytes.Equal(footer[len(footer)-2:], xzFooterMagic) {
		return fmt.Errorf("%w: bad stream footer", errXzFormat)
	}
	// Stream padding (zeros), then EOF or another stream.
	for {
		b, err := x.br.Peek(1)
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			return fmt.Errorf("xz: %w", err)
		}
		if b[0] != 0 {
			return x.streamHeader()
		}
		x.br.ReadByte()
	}
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: bad number in block header", errXzFormat)
	}
	return v, b[n:], nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
