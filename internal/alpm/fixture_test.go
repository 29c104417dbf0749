package alpm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
)

// fixturePKGINFO returns a varied but deterministic package i: epochs,
// split packages (pkgbase differs), every list field, optdepends with
// descriptions, squeezable whitespace, xdata and an unknown key.
func fixturePKGINFO(i int) *PKGINFO {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	name := fmt.Sprintf("pkg%04d", i)
	if i%7 == 3 {
		name = fmt.Sprintf("lib-thing_%d.x+y@z", i)
	}
	ver := fmt.Sprintf("%d.%d.%d-%d", r.IntN(5), r.IntN(20), r.IntN(100), 1+r.IntN(3))
	if i%5 == 0 {
		ver = "2:" + ver
	}
	arch := "x86_64"
	if i%4 == 0 {
		arch = "any"
	}
	pi := &PKGINFO{Package: Package{
		Name: name, Base: name, Version: ver,
		Desc:      fmt.Sprintf("Package number %d: a %s tool", i, []string{"small", "large", "useful"}[i%3]),
		URL:       "https://example.org/" + name,
		BuildDate: 1790000000 + int64(i),
		Packager:  "Test Packager <test@example.org>",
		ISize:     int64(1000 + r.IntN(1<<20)),
		Arch:      arch,
		Licenses:  []string{"MIT"},
	}}
	p := &pi.Package
	if i%3 == 0 {
		p.Base = fmt.Sprintf("base%d", i/3)
		p.Licenses = append(p.Licenses, "GPL-2.0-or-later")
	}
	if i%2 == 0 {
		p.Groups = []string{"testgroup", fmt.Sprintf("group%d", i%5)}
	}
	for j := 0; j < r.IntN(5); j++ {
		p.Depends = append(p.Depends, fmt.Sprintf("dep%d>=1.%d", (i+j)%50, j))
	}
	if i%3 == 1 {
		p.OptDepends = []string{"python: for the scripts", "bash-completion: completion"}
		p.MakeDepends = []string{"cmake", "ninja"}
		p.CheckDepends = []string{"python-pytest"}
	}
	if i%6 == 2 {
		p.Provides = []string{name + "-virtual=1.0", "libthing.so=1-64"}
		p.Conflicts = []string{name + "-git"}
		p.Replaces = []string{name + "-old"}
		p.Backup = []string{"etc/" + name + ".conf"}
	}
	if i%10 == 1 {
		// repo-add squeezes whitespace; ParsePKGINFO must do the same.
		p.Desc = "spaced   out\tdescription  "
	}
	p.XData = []string{"pkgtype=pkg"}
	pi.Unknown = []Field{{Key: "futurekey", Value: "kept"}}
	return pi
}

func fixtureFiles(i int) []PackageFile {
	files := []PackageFile{
		{Name: ".BUILDINFO", Body: []byte("format = 2\n")},
		{Name: ".MTREE", Body: []byte("#mtree\n")},
		{Name: fmt.Sprintf("usr/bin/tool%d", i), Body: bytes.Repeat([]byte("x"), 100+i%300)},
		{Name: fmt.Sprintf("usr/share/doc/pkg%d/README", i), Body: []byte("readme\n")},
	}
	if i%6 == 2 {
		files = append(files, PackageFile{Name: fmt.Sprintf("etc/pkg%d.conf", i), Body: []byte("a=1\n")})
	}
	return files
}
