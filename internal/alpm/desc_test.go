package alpm

import (
	"reflect"
	"strings"
	"testing"
)

// repoAddDesc is a desc entry as repo-add 6.0.2 wrote it.
const repoAddDesc = `%FILENAME%
hello-mk-1:2.0-1-any.pkg.tar.zst

%NAME%
hello-mk

%BASE%
hello-mk

%VERSION%
1:2.0-1

%DESC%
makepkg-built test package

%GROUPS%
g1
g2

%CSIZE%
4242

%ISIZE%
19

%MD5SUM%
0123456789abcdef0123456789abcdef

%SHA256SUM%
0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

%PGPSIG%
iQEzBAABCAAdFiEE

%URL%
https://example.org

%LICENSE%
MIT

%ARCH%
any

%BUILDDATE%
1795824270

%PACKAGER%
Unknown Packager

%REPLACES%
old

%CONFLICTS%
hello-git

%PROVIDES%
hello-virtual=2.0

%DEPENDS%
glibc
bash>=5

%OPTDEPENDS%
python: for scripts

%MAKEDEPENDS%
cmake

%CHECKDEPENDS%
check

`

func TestDescRoundTrip(t *testing.T) {
	p, err := parseDescEntry([]byte(repoAddDesc))
	if err != nil {
		t.Fatalf("ParseDesc: %v", err)
	}
	want := &Package{
		Filename: "hello-mk-1:2.0-1-any.pkg.tar.zst", Name: "hello-mk", Base: "hello-mk", Version: "1:2.0-1",
		Desc: "makepkg-built test package", Groups: []string{"g1", "g2"}, CSize: 4242, ISize: 19,
		MD5Sum: "0123456789abcdef0123456789abcdef", SHA256Sum: strings.Repeat("0123456789abcdef", 4),
		PGPSig: "iQEzBAABCAAdFiEE", URL: "https://example.org", Licenses: []string{"MIT"}, Arch: "any",
		BuildDate: 1795824270, Packager: "Unknown Packager", Replaces: []string{"old"},
		Conflicts: []string{"hello-git"}, Provides: []string{"hello-virtual=2.0"},
		Depends: []string{"glibc", "bash>=5"}, OptDepends: []string{"python: for scripts"},
		MakeDepends: []string{"cmake"}, CheckDepends: []string{"check"},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("parseDescEntry(repo-add desc) = %+v, want %+v", p, want)
	}
	if got := string(p.MarshalDesc()); got != repoAddDesc {
		t.Errorf("MarshalDesc() = %q, want %q", got, repoAddDesc)
	}
}

func TestParseDescTolerance(t *testing.T) {
	tests := []struct {
		name, in string
		want     *Package
	}{
		{"unknown section skipped", "%NAME%\na\n\n%FUTURE%\nx\ny\n\n%VERSION%\n1-1\n", &Package{Name: "a", Version: "1-1"}},
		{"stray lines ignored", "junk\n%NAME%\na\n\nmore junk\n", &Package{Name: "a"}},
		{"no final newline", "%NAME%\na", &Package{Name: "a"}},
		{"data and files", "%DATA%\npkgtype=pkg\n\n%FILES%\nusr/\nusr/bin/a\n", &Package{XData: []string{"pkgtype=pkg"}, Files: []string{"usr/", "usr/bin/a"}}},
		{"empty", "", &Package{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDescEntry([]byte(tc.in))
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseDescEntry(%q) = %+v, %v, want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseDescErrors(t *testing.T) {
	tests := []struct{ name, in, wantErr string }{
		{"csize", "%NAME%\na\n\n%CSIZE%\nbig\n\n", "line 5: CSIZE"},
		{"isize empty", "%ISIZE%\n\n", "line 2: ISIZE"},
		{"builddate", "%BUILDDATE%\n1.5\n", "BUILDDATE"},
		{"filename with slash", "%FILENAME%\n../../etc/passwd\n\n", "invalid package file name"},
		{"filename dot", "%FILENAME%\n.hidden\n\n", "invalid package file name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseDescEntry([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseDescEntry(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestMarshalFiles(t *testing.T) {
	p := &Package{Files: []string{"usr/", "usr/bin/", "usr/bin/a"}}
	want := "%FILES%\nusr/\nusr/bin/\nusr/bin/a\n"
	if got := string(p.MarshalFiles()); got != want {
		t.Errorf("MarshalFiles() = %q, want %q", got, want)
	}
}

// parseDescEntry parses one desc entry, as ReadDB does for each.
func parseDescEntry(data []byte) (*Package, error) {
	p := &Package{}
	if err := p.parseDesc(string(data)); err != nil {
		return nil, err
	}
	return p, nil
}
