package alpm

import (
	"fmt"
	"strings"
)

// FileName is a parsed package file name:
// Name-Version-Arch + Ext, e.g. "hello-1:2.0-1-x86_64" + ".pkg.tar.zst".
type FileName struct {
	Name    string
	Version string // [epoch:]pkgver-pkgrel
	Arch    string
	Ext     string // from ".pkg.tar" on: ".pkg.tar.zst", ".pkg.tar"
}

// String builds the file name back.
func (f FileName) String() string {
	return f.Name + "-" + f.Version + "-" + f.Arch + f.Ext
}

// IsPackageFile reports whether name looks like a package file:
// *.pkg.tar or *.pkg.tar.<ext> with an extension makepkg can produce.
// Signatures (*.sig) and databases are not package files.
func IsPackageFile(name string) bool {
	_, _, ok := splitExt(name)
	return ok
}

// pkgExts are the suffixes makepkg writes (PKGEXT). Only some can be read
// by ReadPackage; the rest are still package files worth mirroring.
var pkgExts = []string{
	".pkg.tar.zst", ".pkg.tar.xz", ".pkg.tar.gz", ".pkg.tar.bz2", ".pkg.tar",
	".pkg.tar.lz4", ".pkg.tar.lzo", ".pkg.tar.lrz", ".pkg.tar.lz", ".pkg.tar.Z",
}

func splitExt(name string) (stem, ext string, ok bool) {
	for _, e := range pkgExts {
		if len(name) > len(e) && strings.HasSuffix(name, e) {
			return name[:len(name)-len(e)], e, true
		}
	}
	return "", "", false
}

// ParseFileName splits a package file name from the right (arch, pkgrel,
// pkgver, then the name, which may itself contain '-') and checks every
// part with the rules makepkg enforces. The name must be a base name.
func ParseFileName(s string) (FileName, error) {
	if strings.ContainsRune(s, '/') {
		return FileName{}, fmt.Errorf("package file name %q: contains '/'", s)
	}
	stem, ext, ok := splitExt(s)
	if !ok {
		return FileName{}, fmt.Errorf("package file name %q: no .pkg.tar extension", s)
	}
	i := strings.LastIndexByte(stem, '-')
	if i < 0 {
		return FileName{}, fmt.Errorf("package file name %q: want name-pkgver-pkgrel-arch", s)
	}
	arch := stem[i+1:]
	stem = stem[:i]
	j := strings.LastIndexByte(stem, '-')
	if j < 0 {
		return FileName{}, fmt.Errorf("package file name %q: want name-pkgver-pkgrel-arch", s)
	}
	k := strings.LastIndexByte(stem[:j], '-')
	if k < 0 {
		return FileName{}, fmt.Errorf("package file name %q: want name-pkgver-pkgrel-arch", s)
	}
	f := FileName{Name: stem[:k], Version: stem[k+1:], Arch: arch, Ext: ext}
	if err := ValidName(f.Name); err != nil {
		return FileName{}, fmt.Errorf("package file name %q: %w", s, err)
	}
	if err := ValidVersion(f.Version); err != nil {
		return FileName{}, fmt.Errorf("package file name %q: %w", s, err)
	}
	if err := ValidArch(f.Arch); err != nil {
		return FileName{}, fmt.Errorf("package file name %q: %w", s, err)
	}
	return f, nil
}

// ValidName checks a pkgname the way makepkg's lint_pkgname does:
// non-empty, only [A-Za-z0-9+_.@-], not starting with '-' or '.'.
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("package name is empty")
	}
	if name[0] == '-' || name[0] == '.' {
		return fmt.Errorf("package name %q: starts with %q", name, name[0])
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isAlnum(c) && c != '+' && c != '_' && c != '.' && c != '@' && c != '-' {
			return fmt.Errorf("package name %q: invalid character %q", name, c)
		}
	}
	return nil
}

// ValidVersion checks "[epoch:]pkgver-pkgrel": epoch an integer; pkgver
// printable ASCII without ':', '/', '-' or whitespace; pkgrel int[.int].
func ValidVersion(v string) error {
	rest := v
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		if i == 0 || !allDigits(rest[:i]) {
			return fmt.Errorf("version %q: epoch is not an integer", v)
		}
		rest = rest[i+1:]
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return fmt.Errorf("version %q: no pkgrel", v)
	}
	pkgver, pkgrel := rest[:i], rest[i+1:]
	if pkgver == "" {
		return fmt.Errorf("version %q: empty pkgver", v)
	}
	for j := 0; j < len(pkgver); j++ {
		c := pkgver[j]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '/' || c == '-' {
			return fmt.Errorf("version %q: pkgver has invalid character %q", v, c)
		}
	}
	a, b, dot := strings.Cut(pkgrel, ".")
	if !allDigits(a) || (dot && !allDigits(b)) {
		return fmt.Errorf("version %q: pkgrel %q is not int[.int]", v, pkgrel)
	}
	return nil
}

// ValidArch checks an arch the way makepkg's lint_arch does: [A-Za-z0-9_]+.
func ValidArch(arch string) error {
	if arch == "" {
		return fmt.Errorf("arch is empty")
	}
	for i := 0; i < len(arch); i++ {
		if c := arch[i]; !isAlnum(c) && c != '_' {
			return fmt.Errorf("arch %q: invalid character %q", arch, c)
		}
	}
	return nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// The C-locale character classes libalpm and makepkg use; bytes >= 0x80
// are in none of them.
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }
