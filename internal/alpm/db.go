package alpm

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Limits on what ReadDB and ReadPackage accept, so hostile input (a
// decompression bomb, an entry claiming gigabytes) cannot make them
// allocate without bound. Arch's extra.files, the largest real db, holds
// about 15k entries and a few hundred MiB of file lists. Variables only so
// that fuzz targets can lower them; nothing else changes them.
var (
	maxDescSize   int64 = 4 << 20  // one desc entry; pacman reads lines up to 512 KiB
	maxFilesSize  int64 = 64 << 20 // one files entry, and one package's file list
	maxDBRetained int64 = 1 << 30  // bytes of desc and files kept in memory
	maxDBStream   int64 = 8 << 30  // decompressed bytes of one db, skipped entries included
)

const maxDBEntries = 1 << 22 // tar headers in one db

// DB is a parsed repository database.
type DB struct {
	Packages    []*Package  // in archive order; Files filled for a .files db
	Compression Compression // as found, so a mirror can tell what it holds
}

// ReadDB reads a repository database ({repo}.db or {repo}.files) in any
// compression pacman reads (sniffed from the content, not the name) or
// none. Like pacman it takes each package's name and version from its
// directory name and fails if %NAME% or %VERSION% disagree, and it rejects
// a %FILENAME% that is not a plain base name. Entries other than desc,
// files and the old depends file are skipped.
func ReadDB(r io.Reader) (*DB, error) { return readDB(r, true) }

// CheckDB reads a database as ReadDB does, with the same checks, but
// keeps no file lists: for a mirror that passes a .files db on and only
// needs to know that it is sound (Arch's extra.files holds a few hundred
// MiB of them). It returns the compression and the number of packages.
func CheckDB(r io.Reader) (Compression, int, error) {
	db, err := readDB(r, false)
	if err != nil {
		return 0, 0, err
	}
	return db.Compression, len(db.Packages), nil
}

func readDB(r io.Reader, keepFiles bool) (*DB, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	comp := sniff(br)
	dr, release, err := decompress(comp, br, nil)
	if err != nil {
		return nil, fmt.Errorf("read db: %w", err)
	}
	defer release()

	// Skipped entries cost no memory but still decompress: without a cap
	// a tiny zstd frame claiming a terabyte-long entry would spin forever.
	dr = &cappedReader{r: dr, left: maxDBStream, limit: maxDBStream}
	db := &DB{Compression: comp}
	byDir := make(map[string]*Package)
	var last *Package
	var lastDir string
	var retained int64
	buf := make([]byte, 0, 8<<10)
	tr := tar.NewReader(dr)
	for n := 0; ; n++ {
		if n >= maxDBEntries {
			return nil, fmt.Errorf("read db: more than %d entries", maxDBEntries)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read db: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			continue
		}
		dir, file, ok := strings.Cut(hdr.Name, "/")
		if !ok || dir == "" || strings.Contains(file, "/") {
			continue
		}
		limit := maxDescSize
		switch file {
		case "desc", "depends":
		case "files":
			limit = maxFilesSize
		default:
			continue
		}
		if hdr.Size > limit {
			return nil, fmt.Errorf("read db: %s is %d bytes, more than %d", hdr.Name, hdr.Size, limit)
		}
		if keepFiles || file != "files" {
			retained += hdr.Size
		}
		if retained > maxDBRetained {
			return nil, fmt.Errorf("read db: more than %d bytes of entries", maxDBRetained)
		}
		// The size in the header is only a claim: read at most that much
		// and grow the buffer as bytes actually arrive.
		buf = buf[:0]
		buf, err = readAllInto(buf, io.LimitReader(tr, hdr.Size))
		if err != nil {
			return nil, fmt.Errorf("read db: %s: %w", hdr.Name, err)
		}
		p := last
		if dir != lastDir {
			p = byDir[dir]
			if p == nil {
				p = &Package{}
				byDir[dir] = p
				db.Packages = append(db.Packages, p)
			}
			last, lastDir = p, dir
		}
		if err := p.parseDesc(string(buf)); err != nil {
			return nil, fmt.Errorf("read db: %s: %w", hdr.Name, err)
		}
		if !keepFiles {
			p.Files = nil // checked, and the entry's memory with it goes
		}
	}
	if err := drainTrailer(dr); err != nil {
		return nil, fmt.Errorf("read db: %w", err)
	}
	for dir, p := range byDir {
		if err := p.checkEntryName(dir); err != nil {
			return nil, fmt.Errorf("read db: %w", err)
		}
	}
	return db, nil
}

func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// checkEntryName applies pacman's rule: the directory "name-pkgver-pkgrel"
// is authoritative, and desc must agree with it.
func (p *Package) checkEntryName(dir string) error {
	i := strings.LastIndexByte(dir, '-')
	if i <= 0 {
		return fmt.Errorf("entry %q: not name-pkgver-pkgrel", truncate(dir))
	}
	j := strings.LastIndexByte(dir[:i], '-')
	if j <= 0 {
		return fmt.Errorf("entry %q: not name-pkgver-pkgrel", truncate(dir))
	}
	name, version := dir[:j], dir[j+1:]
	if p.Name == "" {
		p.Name = name
	} else if p.Name != name {
		return fmt.Errorf("entry %q: %%NAME%% is %q", truncate(dir), truncate(p.Name))
	}
	if p.Version == "" {
		p.Version = version
	} else if p.Version != version {
		return fmt.Errorf("entry %q: %%VERSION%% is %q", truncate(dir), truncate(p.Version))
	}
	return nil
}

// WriteOptions controls WriteDB.
type WriteOptions struct {
	Files       bool        // also write each package's files entry (a .files db)
	Compression Compression // Gzip (the zero value, as repo-add) or Zstd; None for a bare tar
	ModTime     time.Time   // of every tar entry; zero means the Unix epoch
}

// ErrDuplicate is returned by WriteDB when two packages share a name:
// a repository holds one version per name, and the caller must choose.
var ErrDuplicate = errors.New("duplicate package name")

// WriteDB writes a repository database of pkgs. The output depends only
// on the packages and opts: entries are sorted by directory name, owners
// are root:root, modes fixed, times opts.ModTime, so the same input gives
// the same bytes. Each package's desc is exactly what repo-add writes.
// Packages must have a valid name and version, a plain file name, and no
// newline in any value; pkgs itself is not modified.
func WriteDB(w io.Writer, pkgs []*Package, opts WriteOptions) error {
	sorted := slices.Clone(pkgs)
	for _, p := range sorted {
		if err := p.checkWritable(); err != nil {
			return fmt.Errorf("write db: %w", err)
		}
	}
	slices.SortFunc(sorted, func(a, b *Package) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Name == sorted[i-1].Name {
			return fmt.Errorf("write db: %w: %s-%s and %s-%s", ErrDuplicate,
				sorted[i-1].Name, sorted[i-1].Version, sorted[i].Name, sorted[i].Version)
		}
	}
	// Sort by what the archive shows, the directory name; with one package
	// per name this is a total order.
	slices.SortFunc(sorted, func(a, b *Package) int {
		return strings.Compare(a.EntryName(), b.EntryName())
	})

	cw, err := compressor(opts.Compression, w)
	if err != nil {
		return fmt.Errorf("write db: %w", err)
	}
	mtime := opts.ModTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	mtime = mtime.Truncate(time.Second)
	bw := bufio.NewWriterSize(cw, 64<<10)
	tw := tar.NewWriter(bw)
	hdr := func(name string, mode int64, typ byte, size int) *tar.Header {
		return &tar.Header{
			Typeflag: typ, Name: name, Mode: mode, Size: int64(size),
			ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatUnknown,
		}
	}
	var buf []byte
	for _, p := range sorted {
		dir := p.EntryName()
		if err := tw.WriteHeader(hdr(dir+"/", 0o755, tar.TypeDir, 0)); err != nil {
			return fmt.Errorf("write db: %w", err)
		}
		buf = p.appendDesc(buf[:0])
		if err := writeEntry(tw, hdr(dir+"/desc", 0o644, tar.TypeReg, len(buf)), buf); err != nil {
			return fmt.Errorf("write db: %w", err)
		}
		if opts.Files {
			buf = p.appendFiles(buf[:0])
			if err := writeEntry(tw, hdr(dir+"/files", 0o644, tar.TypeReg, len(buf)), buf); err != nil {
				return fmt.Errorf("write db: %w", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write db: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write db: %w", err)
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("write db: %w", err)
	}
	return nil
}

func writeEntry(tw *tar.Writer, h *tar.Header, data []byte) error {
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// checkWritable refuses what would make a db pacman misreads: a value with
// a newline ends its section early, an empty list value ends it too, and
// the directory name must split back into this name and version.
func (p *Package) checkWritable() error {
	if err := ValidName(p.Name); err != nil {
		return err
	}
	if err := ValidVersion(p.Version); err != nil {
		return fmt.Errorf("package %s: %w", p.Name, err)
	}
	if err := validFilename(p.Filename); err != nil {
		return fmt.Errorf("package %s: %w", p.Name, err)
	}
	for _, v := range []string{p.Filename, p.Base, p.Desc, p.MD5Sum, p.SHA256Sum, p.PGPSig, p.URL, p.Arch, p.Packager} {
		if strings.ContainsRune(v, '\n') {
			return fmt.Errorf("package %s: value %q contains a newline", p.Name, truncate(v))
		}
	}
	for _, list := range [][]string{p.Groups, p.Licenses, p.Replaces, p.Conflicts, p.Provides,
		p.Depends, p.OptDepends, p.MakeDepends, p.CheckDepends, p.Files} {
		for _, v := range list {
			if v == "" || strings.ContainsRune(v, '\n') {
				return fmt.Errorf("package %s: list value %q is empty or contains a newline", p.Name, truncate(v))
			}
		}
	}
	return nil
}

// cappedReader fails, rather than ending quietly, once more than left
// bytes are read.
type cappedReader struct {
	r           io.Reader
	left, limit int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("more than %d bytes decompressed", c.limit)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
