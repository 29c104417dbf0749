package alpm

import (
	"bytes"
	"testing"
)

func TestSniffCompression(t *testing.T) {
	pkg := func(c Compression) []byte {
		var b bytes.Buffer
		if err := WritePackage(&b, fixturePKGINFO(1), nil, c); err != nil {
			t.Fatalf("WritePackage(%v): %v", c, err)
		}
		return b.Bytes()
	}
	tarHead := pkg(None)[:262]
	for _, tc := range []struct {
		name string
		head []byte
		want Compression
		ok   bool
	}{
		{"zstd package", pkg(Zstd), Zstd, true},
		{"xz package", pkg(Xz), Xz, true},
		{"gzip package", pkg(Gzip), Gzip, true},
		{"bzip2 magic", []byte("BZh91AY&SY"), Bzip2, true},
		{"bare tar", pkg(None), None, true},
		{"tar head of 262 bytes", tarHead, None, true},
		{"tar head cut short", tarHead[:261], None, false},
		{"zstd magic alone", []byte{0x28, 0xb5, 0x2f, 0xfd}, Zstd, true},
		{"xz magic cut short", []byte{0xfd, '7', 'z', 'X', 'Z'}, None, false},
		{"text", []byte("not a package at all"), None, false},
		{"empty", nil, None, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := SniffCompression(tc.head)
			if c != tc.want || ok != tc.ok {
				t.Errorf("SniffCompression(%q...) = %v, %v, want %v, %v", tc.head[:min(len(tc.head), 8)], c, ok, tc.want, tc.ok)
			}
		})
	}
}
