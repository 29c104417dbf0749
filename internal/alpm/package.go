package alpm

import "strings"

// Package is one package as a repository database describes it. Fields map
// to desc sections (see MarshalDesc); Backup and XData come from .PKGINFO
// and are not written to desc, exactly as repo-add does not.
type Package struct {
	Filename  string // %FILENAME%: the package file's base name
	Name      string // %NAME%, .PKGINFO pkgname
	Base      string // %BASE%, pkgbase
	Version   string // %VERSION%, pkgver: [epoch:]pkgver-pkgrel
	Desc      string // %DESC%, pkgdesc
	Groups    []string
	CSize     int64 // %CSIZE%: size of the package file
	ISize     int64 // %ISIZE%, .PKGINFO size: installed size
	MD5Sum    string
	SHA256Sum string
	PGPSig    string // base64 of the detached binary signature
	URL       string
	Licenses  []string
	Arch      string
	BuildDate int64
	Packager  string

	Replaces     []string
	Conflicts    []string
	Provides     []string
	Depends      []string
	OptDepends   []string
	MakeDepends  []string
	CheckDepends []string

	Backup []string // .PKGINFO backup; never in a db
	XData  []string // .PKGINFO xdata, desc %DATA% (read, not written)
	Files  []string // files db: sorted paths, directories end in "/"
}

// EntryName is the directory of p's entry in a repository database,
// "name-version", from which pacman takes the name and version.
func (p *Package) EntryName() string { return p.Name + "-" + p.Version }

// DepName is the package name of a dependency: "glibc>=2.38" -> "glibc",
// "foo: for bar" (an optdepend) -> "foo".
func DepName(dep string) string {
	if i := strings.IndexAny(dep, "<>=:"); i >= 0 {
		dep = dep[:i]
	}
	return strings.TrimSpace(dep)
}
