package alpm

import (
	"fmt"
	"strconv"
	"strings"
)

// MarshalDesc returns p's desc entry exactly as repo-add 6.0.2 writes it:
// sections in repo-add's order, empty fields left out, each section ended
// by a blank line. Backup, XData and Files are not part of desc.
func (p *Package) MarshalDesc() []byte {
	return p.appendDesc(make([]byte, 0, 512))
}

func (p *Package) appendDesc(b []byte) []byte {
	one := func(key, v string) {
		if v != "" {
			b = append(b, '%')
			b = append(b, key...)
			b = append(b, "%\n"...)
			b = append(b, v...)
			b = append(b, "\n\n"...)
		}
	}
	num := func(key string, n int64) {
		// repo-add writes what it read; a missing size is an empty field.
		if n != 0 {
			b = append(b, '%')
			b = append(b, key...)
			b = append(b, "%\n"...)
			b = strconv.AppendInt(b, n, 10)
			b = append(b, "\n\n"...)
		}
	}
	many := func(key string, vs []string) {
		if len(vs) == 0 {
			return
		}
		b = append(b, '%')
		b = append(b, key...)
		b = append(b, "%\n"...)
		for _, v := range vs {
			b = append(b, v...)
			b = append(b, '\n')
		}
		b = append(b, '\n')
	}
	one("FILENAME", p.Filename)
	one("NAME", p.Name)
	one("BASE", p.Base)
	one("VERSION", p.Version)
	one("DESC", p.Desc)
	many("GROUPS", p.Groups)
	num("CSIZE", p.CSize)
	// ISIZE 0 is real (an empty metapackage has size = 0) and repo-add
	// writes it, since "0" is a non-empty string.
	b = append(b, "%ISIZE%\n"...)
	b = strconv.AppendInt(b, p.ISize, 10)
	b = append(b, "\n\n"...)
	one("MD5SUM", p.MD5Sum)
	one("SHA256SUM", p.SHA256Sum)
	one("PGPSIG", p.PGPSig)
	one("URL", p.URL)
	many("LICENSE", p.Licenses)
	one("ARCH", p.Arch)
	num("BUILDDATE", p.BuildDate)
	one("PACKAGER", p.Packager)
	many("REPLACES", p.Replaces)
	many("CONFLICTS", p.Conflicts)
	many("PROVIDES", p.Provides)
	many("DEPENDS", p.Depends)
	many("OPTDEPENDS", p.OptDepends)
	many("MAKEDEPENDS", p.MakeDepends)
	many("CHECKDEPENDS", p.CheckDepends)
	return b
}

// MarshalFiles returns p's files entry as repo-add writes it: "%FILES%"
// and one path a line, with no blank line at the end. p.Files is written
// in its order; ReadPackage already sorts it like `LC_ALL=C sort -u`.
func (p *Package) MarshalFiles() []byte {
	return p.appendFiles(nil)
}

func (p *Package) appendFiles(b []byte) []byte {
	b = append(b, "%FILES%\n"...)
	for _, f := range p.Files {
		b = append(b, f...)
		b = append(b, '\n')
	}
	return b
}

// parseDesc parses a desc entry (or a files entry, or both concatenated)
// into p the way pacman's sync db reader does: "%KEY%" lines open a
// section whose values run to the next blank line; unknown sections are
// skipped; only '\n' ends a line. CSIZE, ISIZE and BUILDDATE must be
// integers, and FILENAME must be a base name not starting with '.'; errors
// name the line. Every string it stores is a substring of
// text, so a db entry costs one allocation for all its values.
func (p *Package) parseDesc(text string) error {
	line := 0
	next := func() (string, bool) {
		if text == "" {
			return "", false
		}
		line++
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			l := text
			text = ""
			return l, true
		}
		l := text[:i]
		text = text[i+1:]
		return l, true
	}
	// values reads a section's lines up to the blank line that ends it.
	values := func() []string {
		var vs []string
		for {
			l, ok := next()
			if !ok || l == "" {
				return vs
			}
			vs = append(vs, l)
		}
	}
	first := func() string {
		vs := values()
		if len(vs) == 0 {
			return ""
		}
		return vs[0]
	}
	integer := func(key string) (int64, error) {
		at := line + 1
		v := first()
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("desc line %d: %s %q is not an integer", at, key, truncate(v))
		}
		return n, nil
	}
	for {
		l, ok := next()
		if !ok {
			return nil
		}
		if len(l) < 3 || l[0] != '%' || l[len(l)-1] != '%' {
			continue // pacman ignores stray lines between sections
		}
		var err error
		switch l[1 : len(l)-1] {
		case "FILENAME":
			at := line + 1
			p.Filename = first()
			if err := validFilename(p.Filename); err != nil {
				return fmt.Errorf("desc line %d: %w", at, err)
			}
		case "NAME":
			p.Name = first()
		case "BASE":
			p.Base = first()
		case "VERSION":
			p.Version = first()
		case "DESC":
			p.Desc = first()
		case "GROUPS":
			p.Groups = values()
		case "CSIZE":
			p.CSize, err = integer("CSIZE")
		case "ISIZE":
			p.ISize, err = integer("ISIZE")
		case "MD5SUM":
			p.MD5Sum = first()
		case "SHA256SUM":
			p.SHA256Sum = first()
		case "PGPSIG":
			p.PGPSig = first()
		case "URL":
			p.URL = first()
		case "LICENSE":
			p.Licenses = values()
		case "ARCH":
			p.Arch = first()
		case "BUILDDATE":
			p.BuildDate, err = integer("BUILDDATE")
		case "PACKAGER":
			p.Packager = first()
		case "REPLACES":
			p.Replaces = values()
		case "CONFLICTS":
			p.Conflicts = values()
		case "PROVIDES":
			p.Provides = values()
		case "DEPENDS":
			p.Depends = values()
		case "OPTDEPENDS":
			p.OptDepends = values()
		case "MAKEDEPENDS":
			p.MakeDepends = values()
		case "CHECKDEPENDS":
			p.CheckDepends = values()
		case "DATA":
			p.XData = values()
		case "FILES":
			p.Files = values()
		default:
			values()
		}
		if err != nil {
			return err
		}
	}
}

// validFilename is pacman's _alpm_validate_filename: a db must not make
// the client (or us) write outside the cache directory.
func validFilename(name string) error {
	if name == "" || name[0] == '.' || strings.ContainsRune(name, '/') {
		return fmt.Errorf("invalid package file name %q", truncate(name))
	}
	return nil
}
