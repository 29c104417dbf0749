package alpm

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func buildPackage(t testing.TB, pi *PKGINFO, files []PackageFile, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	if c == Bzip2 {
		must(t, WritePackage(&buf, pi, files, None))
		path, err := exec.LookPath("bzip2")
		if err != nil {
			t.Skip("bzip2 not found")
		}
		cmd := exec.Command(path, "-c")
		cmd.Stdin = &buf
		out, err := cmd.Output()
		must(t, err)
		return out
	}
	must(t, WritePackage(&buf, pi, files, c))
	return buf.Bytes()
}

func TestReadPackage(t *testing.T) {
	pi := fixturePKGINFO(8) // with backup, provides, conflicts, replaces
	files := fixtureFiles(8)
	wantFiles := []string{"etc/", "etc/pkg8.conf", "usr/", "usr/bin/", "usr/bin/tool8", "usr/share/", "usr/share/doc/", "usr/share/doc/pkg8/", "usr/share/doc/pkg8/README"}
	for _, c := range []Compression{Zstd, Gzip, Xz, Bzip2, None} {
		for _, first := range []bool{true, false} {
			name := c.String() + map[bool]string{true: "-pkginfo-first", false: "-pkginfo-after-mtree"}[first]
			t.Run(name, func(t *testing.T) {
				fs := files
				if first {
					fs = files[2:] // without .BUILDINFO and .MTREE
				}
				data := buildPackage(t, pi, fs, c)
				for _, list := range []bool{false, true} {
					cr := &countingReader{r: bytes.NewReader(data)}
					p, err := ReadPackage(cr, ReadOptions{ListFiles: list})
					if err != nil {
						t.Fatalf("ReadPackage(list=%v): %v", list, err)
					}
					if cr.n != int64(len(data)) {
						t.Errorf("ReadPackage consumed %d of %d bytes", cr.n, len(data))
					}
					md := md5.Sum(data)
					sh := sha256.Sum256(data)
					want := pi.Package
					want.CSize = int64(len(data))
					want.MD5Sum = hex.EncodeToString(md[:])
					want.SHA256Sum = hex.EncodeToString(sh[:])
					if list {
						want.Files = wantFiles
					}
					if !reflect.DeepEqual(p, &want) {
						t.Errorf("ReadPackage(list=%v) = %+v, want %+v", list, p, &want)
					}
				}
			})
		}
	}
}

// TestReadPackageStopsDecompressing proves .PKGINFO is returned without
// decompressing the rest: a package whose payload is corrupt still reads
// (with the sums of the corrupt bytes), and fails only when files are
// listed.
func TestReadPackageStopsDecompressing(t *testing.T) {
	payload := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	pi := &PKGINFO{Package: Package{Name: "big", Version: "1-1", Arch: "any", ISize: int64(len(payload))}}
	for _, c := range []Compression{Zstd, Gzip, Xz} {
		t.Run(c.String(), func(t *testing.T) {
			data := buildPackage(t, pi, []PackageFile{{Name: "usr/share/big", Body: payload}}, c)
			for i := len(data) / 2; i < len(data)/2+4096; i++ {
				data[i] ^= 0x55
			}
			p, err := ReadPackage(bytes.NewReader(data), ReadOptions{})
			if err != nil {
				t.Fatalf("ReadPackage(corrupt payload) = %v, want .PKGINFO read before the corruption", err)
			}
			sh := sha256.Sum256(data)
			if p.Name != "big" || p.SHA256Sum != hex.EncodeToString(sh[:]) || p.CSize != int64(len(data)) {
				t.Errorf("ReadPackage(corrupt payload) = %s %s %d, want big %x %d", p.Name, p.SHA256Sum, p.CSize, sh, len(data))
			}
			if _, err := ReadPackage(bytes.NewReader(data), ReadOptions{ListFiles: true}); err == nil {
				t.Errorf("ReadPackage(corrupt payload, ListFiles) = nil error, want the corruption found")
			}
		})
	}
}

func TestReadPackageErrors(t *testing.T) {
	noPKGINFO := func() []byte {
		var buf bytes.Buffer
		w, _ := compressor(Zstd, &buf)
		w.Write(rawTar(t, "usr/bin/a", "x"))
		w.Close()
		return buf.Bytes()
	}()
	badPKGINFO := func() []byte {
		var buf bytes.Buffer
		w, _ := compressor(Gzip, &buf)
		w.Write(rawTar(t, ".PKGINFO", "pkgname = a\nnonsense\n"))
		w.Close()
		return buf.Bytes()
	}()
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"no .PKGINFO", noPKGINFO, "no .PKGINFO"},
		{"bad .PKGINFO", badPKGINFO, "line 2"},
		{"garbage", []byte(strings.Repeat("garbage ", 100)), "read package"},
		{"empty", nil, "read package"},
		{"truncated zstd", buildPackage(t, fixturePKGINFO(1), fixtureFiles(1), Zstd)[:40], "read package"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadPackage(bytes.NewReader(tc.data), ReadOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ReadPackage(%s) error = %v, want one containing %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

func TestEncodeSig(t *testing.T) {
	if s, err := EncodeSig([]byte{1, 2, 3}); err != nil || s != "AQID" {
		t.Errorf("EncodeSig(1,2,3) = %q, %v, want AQID", s, err)
	}
	if _, err := EncodeSig([]byte("-----BEGIN PGP SIGNATURE-----\n")); err == nil {
		t.Errorf("EncodeSig(armored) = nil error, want one")
	}
	if _, err := EncodeSig(make([]byte, 16<<10+1)); err == nil {
		t.Errorf("EncodeSig(16 KiB + 1) = nil error, want one")
	}
}

func TestReadPackageMaxUncompressed(t *testing.T) {
	pi := &PKGINFO{Package: Package{Name: "big", Version: "1-1", Arch: "any"}}
	data := buildPackage(t, pi, []PackageFile{{Name: "usr/share/zeros", Body: make([]byte, 2<<20)}}, Zstd)
	_, err := ReadPackage(bytes.NewReader(data), ReadOptions{ListFiles: true, MaxUncompressed: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "decompressed") {
		t.Errorf("ReadPackage(2 MiB archive, 1 MiB cap) error = %v, want the cap", err)
	}
	if _, err := ReadPackage(bytes.NewReader(data), ReadOptions{ListFiles: true, MaxUncompressed: 4 << 20}); err != nil {
		t.Errorf("ReadPackage(2 MiB archive, 4 MiB cap) = %v", err)
	}
}
