package alpm

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxPKGINFOSize caps .PKGINFO: real ones are a few KiB.
const maxPKGINFOSize = 4 << 20

// PKGINFO is a parsed .PKGINFO: the package it describes plus the lines
// whose key pacman does not know, kept in file order.
type PKGINFO struct {
	Package
	Unknown []Field
}

// Field is one "key = value" line of .PKGINFO.
type Field struct {
	Line       int
	Key, Value string
}

// ParsePKGINFO parses a .PKGINFO (at most 4 MiB). Lines are "key = value"
// (pacman splits at the first space, which must begin " = "; a bare
// "key =" is read as an empty value); blank lines and lines starting with
// '#' are skipped. Values are normalised like repo-add does (runs of
// whitespace become one space, ends trimmed), so a db written from the
// result matches repo-add's. Repeated single-valued keys: the last wins,
// as in both pacman and repo-add. Empty values of list keys are dropped
// (repo-add would write them as blank lines that end the section).
// pkgname and pkgver are required and must pass ValidName and
// ValidVersion; size and builddate must be integers.
// Errors name the line.
func ParsePKGINFO(r io.Reader) (*PKGINFO, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPKGINFOSize+1))
	if err != nil {
		return nil, fmt.Errorf("read .PKGINFO: %w", err)
	}
	if len(data) > maxPKGINFOSize {
		return nil, fmt.Errorf(".PKGINFO larger than %d bytes", maxPKGINFOSize)
	}
	return parsePKGINFO(data)
}

func parsePKGINFO(data []byte) (*PKGINFO, error) {
	pi := &PKGINFO{}
	p := &pi.Package
	// One string for the whole file: every value is a substring of it.
	text := string(data)
	line, nameLine, verLine := 0, 0, 0
	for len(text) > 0 {
		var l string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			l, text = text[:i], text[i+1:]
		} else {
			l, text = text, ""
		}
		line++
		if l == "" || l[0] == '#' {
			continue
		}
		sp := strings.IndexByte(l, ' ')
		if sp <= 0 {
			return nil, fmt.Errorf(".PKGINFO line %d: want \"key = value\", got %q", line, truncate(l))
		}
		key, rest := l[:sp], l[sp:]
		var val string
		switch {
		case strings.HasPrefix(rest, " = "):
			val = rest[3:]
		case rest == " =":
		default:
			return nil, fmt.Errorf(".PKGINFO line %d: want \"key = value\", got %q", line, truncate(l))
		}
		val = normalizeSpace(val)
		var list *[]string
		switch key {
		case "pkgname":
			p.Name, nameLine = val, line
		case "pkgbase":
			p.Base = val
		case "pkgver":
			p.Version, verLine = val, line
		case "pkgdesc":
			p.Desc = val
		case "url":
			p.URL = val
		case "builddate":
			n, err := parseInt(val)
			if err != nil {
				return nil, fmt.Errorf(".PKGINFO line %d: builddate: %w", line, err)
			}
			p.BuildDate = n
		case "packager":
			p.Packager = val
		case "size":
			n, err := parseInt(val)
			if err != nil {
				return nil, fmt.Errorf(".PKGINFO line %d: size: %w", line, err)
			}
			p.ISize = n
		case "arch":
			p.Arch = val
		case "license":
			list = &p.Licenses
		case "replaces":
			list = &p.Replaces
		case "group":
			list = &p.Groups
		case "conflict":
			list = &p.Conflicts
		case "provides":
			list = &p.Provides
		case "backup":
			list = &p.Backup
		case "depend":
			list = &p.Depends
		case "optdepend":
			list = &p.OptDepends
		case "makedepend":
			list = &p.MakeDepends
		case "checkdepend":
			list = &p.CheckDepends
		case "xdata":
			list = &p.XData
		default:
			pi.Unknown = append(pi.Unknown, Field{Line: line, Key: key, Value: val})
		}
		// A list value of whitespace alone ("\r") is as empty as "": it
		// would be written back as an empty value.
		if list != nil && strings.Trim(val, " ") != "" {
			*list = append(*list, val)
		}
	}
	if p.Name == "" {
		return nil, fmt.Errorf(".PKGINFO: no pkgname")
	}
	if p.Version == "" {
		return nil, fmt.Errorf(".PKGINFO: no pkgver")
	}
	// pacman itself only needs the two; makepkg guarantees the rules, and a
	// package that breaks them would make a db entry pacman misreads.
	if err := ValidName(p.Name); err != nil {
		return nil, fmt.Errorf(".PKGINFO line %d: %w", nameLine, err)
	}
	if err := ValidVersion(p.Version); err != nil {
		return nil, fmt.Errorf(".PKGINFO line %d: %w", verLine, err)
	}
	return pi, nil
}

// parseInt accepts what repo-add would copy into a numeric desc field and
// pacman would read back: a decimal integer; empty is 0 (field omitted).
func parseInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", truncate(s))
	}
	return n, nil
}

// normalizeSpace does what repo-add's `read` plus ${val//+([[:space:]])/ }
// do: trim spaces at both ends and squeeze every whitespace run into one
// space. It returns s itself when nothing changes, which is the usual case.
func normalizeSpace(s string) string {
	clean := len(s) == 0 || (s[0] != ' ' && s[len(s)-1] != ' ')
	for i := 0; clean && i < len(s); i++ {
		if c := s[i]; isSpace(c) && (c != ' ' || s[i+1] == ' ') {
			clean = false
		}
	}
	if clean {
		return s
	}
	s = strings.Trim(s, " ")
	var b strings.Builder
	b.Grow(len(s))
	inSpace := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isSpace(c) {
			if !inSpace {
				b.WriteByte(' ')
			}
			inSpace = true
			continue
		}
		inSpace = false
		b.WriteByte(c)
	}
	return b.String()
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// MarshalPKGINFO writes p as makepkg would, for building test packages and
// for round trips: known keys in makepkg's order, then pi.Unknown.
func (pi *PKGINFO) MarshalPKGINFO() []byte {
	var b bytes.Buffer
	p := &pi.Package
	kv := func(k, v string) {
		if v != "" {
			b.WriteString(k + " = " + v + "\n")
		}
	}
	kvs := func(k string, vs []string) {
		for _, v := range vs {
			kv(k, v)
		}
	}
	kv("pkgname", p.Name)
	kv("pkgbase", p.Base)
	kvs("xdata", p.XData)
	kv("pkgver", p.Version)
	kv("pkgdesc", p.Desc)
	kv("url", p.URL)
	if p.BuildDate != 0 {
		kv("builddate", strconv.FormatInt(p.BuildDate, 10))
	}
	kv("packager", p.Packager)
	kv("size", strconv.FormatInt(p.ISize, 10))
	kv("arch", p.Arch)
	kvs("license", p.Licenses)
	kvs("replaces", p.Replaces)
	kvs("group", p.Groups)
	kvs("conflict", p.Conflicts)
	kvs("provides", p.Provides)
	kvs("backup", p.Backup)
	kvs("depend", p.Depends)
	kvs("optdepend", p.OptDepends)
	kvs("makedepend", p.MakeDepends)
	kvs("checkdepend", p.CheckDepends)
	for _, f := range pi.Unknown {
		kv(f.Key, f.Value)
	}
	return b.Bytes()
}
