package alpm

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/ulikunitz/xz"
)

// PackageFile is one entry WritePackage puts in a package archive.
type PackageFile struct {
	Name string // relative path, e.g. "usr/bin/hello"; parents are added
	Body []byte
}

// WritePackage writes a package archive the way bsdtar piped into zstd
// does, for tests and benchmarks here and elsewhere in
// mirrord: makepkg refuses to run as root. Entries whose name starts with
// '.' (.BUILDINFO, .MTREE) come first, as makepkg orders them, then
// .PKGINFO from pi, then the payload with its parent directories. All
// entries are owned by root with mtime pi.BuildDate, so the bytes are
// reproducible. c may be Zstd, Gzip, Xz or None.
func WritePackage(w io.Writer, pi *PKGINFO, files []PackageFile, c Compression) error {
	var cw io.WriteCloser
	var err error
	if c == Xz {
		cw, err = xz.NewWriter(w)
	} else {
		cw, err = compressor(c, w)
	}
	if err != nil {
		return fmt.Errorf("write package: %w", err)
	}
	mtime := time.Unix(pi.BuildDate, 0)
	tw := tar.NewWriter(cw)
	put := func(name string, typ byte, body []byte) error {
		mode := int64(0o644)
		if typ == tar.TypeDir {
			mode = 0o755
		}
		h := &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: int64(len(body)),
			ModTime: mtime, Uname: "root", Gname: "root"}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	var payload []PackageFile
	for _, f := range files {
		if strings.HasPrefix(f.Name, ".") {
			if err := put(f.Name, tar.TypeReg, f.Body); err != nil {
				return fmt.Errorf("write package: %w", err)
			}
			continue
		}
		payload = append(payload, f)
	}
	if err := put(".PKGINFO", tar.TypeReg, pi.MarshalPKGINFO()); err != nil {
		return fmt.Errorf("write package: %w", err)
	}
	dirs := make(map[string]bool)
	var mkdirs func(dir string) error
	mkdirs = func(dir string) error {
		if dir == "." || dir == "/" || dirs[dir] {
			return nil
		}
		if err := mkdirs(path.Dir(dir)); err != nil {
			return err
		}
		dirs[dir] = true
		return put(dir+"/", tar.TypeDir, nil)
	}
	for _, f := range payload {
		if err := mkdirs(path.Dir(f.Name)); err != nil {
			return fmt.Errorf("write package: %w", err)
		}
		if err := put(f.Name, tar.TypeReg, f.Body); err != nil {
			return fmt.Errorf("write package: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write package: %w", err)
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("write package: %w", err)
	}
	return nil
}
