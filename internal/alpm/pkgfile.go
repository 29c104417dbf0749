package alpm

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ReadOptions controls ReadPackage.
type ReadOptions struct {
	// ListFiles fills Package.Files (for a .files db). It needs the whole
	// archive decompressed; without it decompression stops at .PKGINFO.
	ListFiles bool
	// MaxUncompressed caps the decompressed archive (0: 64 GiB). A small
	// file can decompress to terabytes; the cap bounds the time spent.
	MaxUncompressed int64
	// MaxFiles caps the entries of the file list (0: maxFileEntries);
	// MaxFileBytes caps the bytes of their names, one more each for its
	// newline in a files entry (0: 64 MiB, what the db reader takes of one
	// files entry). Past either the read fails with ErrFileList.
	MaxFiles     int
	MaxFileBytes int64
	// Reserve, if set, is called with the bytes of window (zstd) or
	// dictionary (xz) a decoder is about to allocate, before it does; the
	// function it returns is called once the decoder is done with them.
	// It may block: internal/hosted bounds the memory of concurrent
	// uploads with it. When release is called the window is unreachable,
	// so release may collect it (runtime.GC) before another read
	// allocates one. Gzip, bzip2 and bare tars need no window.
	Reserve func(bytes int64) (release func())
}

// maxFileEntries caps the entries of one package archive when listing.
const maxFileEntries = 1 << 22

// ErrFileList: a package lists more files, or longer names, than
// ReadOptions allow.
var ErrFileList = errors.New("file list over the limit")

// ReadPackage reads a package file from r: it sniffs the compression (zstd,
// xz, gzip, bzip2 or a bare tar), parses .PKGINFO, and computes CSize,
// MD5Sum and SHA256Sum in the same single pass over r. It always consumes
// r to the end, for the sums, but decompresses only up to .PKGINFO unless
// opts.ListFiles asks for the file list. Filename is left empty: the
// reader has no name (see ReadPackageFile).
func ReadPackage(r io.Reader, opts ReadOptions) (*Package, error) {
	h := &sumReader{r: r, md5: md5.New(), sha: sha256.New()}
	br := bufio.NewReaderSize(h, 64<<10)
	pi, files, err := readPackage(br, opts)
	if err != nil {
		return nil, err
	}
	// Whatever the decompressor did not need still counts for the sums.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, fmt.Errorf("read package: %w", err)
	}
	p := &pi.Package
	p.CSize = h.n
	p.MD5Sum = hex.EncodeToString(h.md5.Sum(nil))
	p.SHA256Sum = hex.EncodeToString(h.sha.Sum(nil))
	p.Files = files
	return p, nil
}

// ReadPackageInfo reads only the .PKGINFO of a package: it decompresses r
// up to that entry and stops there, computing no sums and ignoring
// ListFiles. It is the cheap look at an upload's name and version before
// ReadPackage reads all of it.
func ReadPackageInfo(r io.Reader, opts ReadOptions) (*PKGINFO, error) {
	opts.ListFiles = false
	pi, _, err := readPackage(bufio.NewReaderSize(r, 64<<10), opts)
	return pi, err
}

func readPackage(br *bufio.Reader, opts ReadOptions) (*PKGINFO, []string, error) {
	comp := sniff(br)
	dr, release, err := decompress(comp, br, opts.Reserve)
	if err != nil {
		return nil, nil, fmt.Errorf("read package: %w", err)
	}
	limit := opts.MaxUncompressed
	if limit <= 0 {
		limit = 64 << 30
	}
	pi, files, err := scanPackage(&cappedReader{r: dr, left: limit, limit: limit}, opts)
	release()
	if err != nil {
		return nil, nil, fmt.Errorf("read package (%v): %w", comp, err)
	}
	return pi, files, nil
}

// ReadPackageFile is ReadPackage on a file, with Filename set to its base
// name.
func ReadPackageFile(path string, opts ReadOptions) (*Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := ReadPackage(f, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.Filename = filepath.Base(path)
	return p, nil
}

// scanPackage walks the archive for .PKGINFO and, if listFiles, the paths
// repo-add puts in a files entry: every entry not starting with '.',
// directories with a trailing '/', sorted bytewise and deduplicated like
// `LC_ALL=C sort -u`.
func scanPackage(r io.Reader, opts ReadOptions) (*PKGINFO, []string, error) {
	listFiles := opts.ListFiles
	maxFiles, maxBytes := opts.MaxFiles, opts.MaxFileBytes
	if maxFiles <= 0 {
		maxFiles = maxFileEntries
	}
	if maxBytes <= 0 {
		maxBytes = maxFilesSize
	}
	tr := tar.NewReader(r)
	var pi *PKGINFO
	var files []string
	var namesSize int64
	for n := 0; ; n++ {
		if n >= maxFileEntries {
			return nil, nil, fmt.Errorf("more than %d archive entries", maxFileEntries)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		name := hdr.Name
		if name == ".PKGINFO" {
			if pi != nil {
				return nil, nil, fmt.Errorf("two .PKGINFO entries")
			}
			if pi, err = ParsePKGINFO(tr); err != nil {
				return nil, nil, err
			}
			if !listFiles {
				break
			}
			continue
		}
		if !listFiles || name == "" || name[0] == '.' {
			continue
		}
		if hdr.Typeflag == tar.TypeDir && !strings.HasSuffix(name, "/") {
			name += "/"
		}
		if len(files) >= maxFiles {
			return nil, nil, fmt.Errorf("%w: more than %d files", ErrFileList, maxFiles)
		}
		if namesSize += int64(len(name)) + 1; namesSize > maxBytes {
			return nil, nil, fmt.Errorf("%w: file names of more than %d bytes", ErrFileList, maxBytes)
		}
		files = append(files, name)
	}
	if pi == nil {
		return nil, nil, fmt.Errorf("no .PKGINFO")
	}
	if listFiles {
		// The tar ends before the compressed stream does; reading on to its
		// end is what checks the gzip CRC, the xz check or zstd's checksum.
		if err := drainTrailer(r); err != nil {
			return nil, nil, err
		}
		slices.Sort(files)
		files = slices.Compact(files)
		if files == nil {
			files = []string{}
		}
	}
	return pi, files, nil
}

// sumReader hashes and counts everything read through it.
type sumReader struct {
	r        io.Reader
	md5, sha hash.Hash
	n        int64
}

func (s *sumReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.md5.Write(p[:n])
		s.sha.Write(p[:n])
		s.n += int64(n)
	}
	return n, err
}

// maxSigSize is repo-add's limit on a package signature.
const maxSigSize = 16 << 10

// EncodeSig turns a detached binary signature into the %PGPSIG% value,
// refusing what repo-add refuses: armored signatures and files over 16 KiB.
func EncodeSig(sig []byte) (string, error) {
	if bytes.Contains(sig, []byte("BEGIN PGP SIGNATURE")) {
		return "", fmt.Errorf("armored signature: want a binary one")
	}
	if len(sig) > maxSigSize {
		return "", fmt.Errorf("signature is %d bytes, more than %d", len(sig), maxSigSize)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// maxTrailer is how much may follow the end of a tar inside the compressed
// stream: bsdtar pads to a 10 KiB record; more is a bomb or not a tar.
const maxTrailer = 1 << 20

// drainTrailer reads the decompressed stream to its end after the tar's
// end-of-archive marker, so the compressor's own check (gzip CRC, xz check,
// zstd checksum) runs and truncation or corruption is reported.
func drainTrailer(r io.Reader) error {
	n, err := io.Copy(io.Discard, io.LimitReader(r, maxTrailer+1))
	if err != nil {
		return err
	}
	if n > maxTrailer {
		return fmt.Errorf("more than %d bytes after the end of the tar archive", maxTrailer)
	}
	return nil
}
