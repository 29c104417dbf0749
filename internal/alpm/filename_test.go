package alpm

import (
	"strings"
	"testing"
)

func TestParseFileName(t *testing.T) {
	tests := []struct {
		in   string
		want FileName
	}{
		{"hello-1.0-1-x86_64.pkg.tar.zst", FileName{"hello", "1.0-1", "x86_64", ".pkg.tar.zst"}},
		{"hello-mk-1:2.0-1-any.pkg.tar.zst", FileName{"hello-mk", "1:2.0-1", "any", ".pkg.tar.zst"}},
		{"lib32-glibc-2.40+r16+gaa533d58ff-2-x86_64.pkg.tar.zst", FileName{"lib32-glibc", "2.40+r16+gaa533d58ff-2", "x86_64", ".pkg.tar.zst"}},
		{"a-b-c-1_2.x-3.1-aarch64.pkg.tar.xz", FileName{"a-b-c", "1_2.x-3.1", "aarch64", ".pkg.tar.xz"}},
		{"x@y+z-0-1-any.pkg.tar", FileName{"x@y+z", "0-1", "any", ".pkg.tar"}},
		{"demo-1.0-1-any.pkg.tar.gz", FileName{"demo", "1.0-1", "any", ".pkg.tar.gz"}},
	}
	for _, tc := range tests {
		got, err := ParseFileName(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseFileName(%q) = %+v, %v, want %+v", tc.in, got, err, tc.want)
			continue
		}
		if s := got.String(); s != tc.in {
			t.Errorf("ParseFileName(%q).String() = %q, want %q", tc.in, s, tc.in)
		}
	}
}

func TestParseFileNameErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"no extension", "hello-1.0-1-x86_64"},
		{"sig", "hello-1.0-1-x86_64.pkg.tar.zst.sig"},
		{"db", "core.db.tar.gz"},
		{"too few parts", "hello-1.0-x86_64.pkg.tar.zst"},
		{"leading dash", "-hello-1.0-1-x86_64.pkg.tar.zst"},
		{"leading dot", ".hello-1.0-1-x86_64.pkg.tar.zst"},
		{"slash", "../hello-1.0-1-x86_64.pkg.tar.zst"},
		{"bad pkgrel", "hello-1.0-a-x86_64.pkg.tar.zst"},
		{"bad epoch", "hello-x:1.0-1-x86_64.pkg.tar.zst"},
		{"empty arch", "hello-1.0-1-.pkg.tar.zst"},
		{"space in name", "hel lo-1.0-1-x86_64.pkg.tar.zst"},
		{"colon in pkgver", "hello-1:2:3-1-any.pkg.tar.zst"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := ParseFileName(tc.in); err == nil {
				t.Errorf("ParseFileName(%q) = %+v, want an error", tc.in, got)
			}
		})
	}
}

func TestIsPackageFile(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a-1-1-any.pkg.tar.zst", true},
		{"a-1-1-any.pkg.tar.xz", true},
		{"a-1-1-any.pkg.tar.gz", true},
		{"a-1-1-any.pkg.tar.bz2", true},
		{"a-1-1-any.pkg.tar", true},
		{"a-1-1-any.pkg.tar.lz4", true},
		{"a-1-1-any.pkg.tar.zst.sig", false},
		{"core.db", false},
		{"core.db.tar.gz", false},
		{".pkg.tar.zst", false},
		{"lastsync", false},
	}
	for _, tc := range tests {
		if got := IsPackageFile(tc.in); got != tc.want {
			t.Errorf("IsPackageFile(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"glibc", true}, {"lib32-gcc-libs", true}, {"c++utilities", true}, {"a_b.c@d", true}, {"0ad", true},
		{"", false}, {"-x", false}, {".x", false}, {"a b", false}, {"a/b", false}, {"ä", false}, {"a:b", false},
	}
	for _, tc := range tests {
		if err := ValidName(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestValidVersion(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"1.0-1", true}, {"1:1.0-1", true}, {"1.0-1.1", true}, {"2.40+r16+g1-2", true}, {"0-0", true},
		{"1.0", false}, {"1.0-", false}, {"-1", false}, {"1.0-1.a", false}, {":1.0-1", false},
		{"a:1.0-1", false}, {"1 0-1", false}, {"1.0-1-1", false}, {"1/0-1", false},
	}
	for _, tc := range tests {
		if err := ValidVersion(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidVersion(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
	if err := ValidVersion(strings.Repeat("1", 10) + "-1"); err != nil {
		t.Errorf("ValidVersion(long) = %v", err)
	}
}
