package alpm

import (
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"testing"
)

// extraLike returns n packages shaped like Arch's [extra]: about 15k of
// them with a PGPSIG (incompressible, most of a real db's size), a few
// dependencies each and a description.
func extraLike(n int) []*Package {
	pkgs := fixtureDBPackages(n)
	r := rand.New(rand.NewPCG(9, 9))
	sig := make([]byte, 310)
	for _, p := range pkgs {
		for i := range sig {
			sig[i] = byte(r.Uint32())
		}
		p.PGPSig = base64.StdEncoding.EncodeToString(sig)
		p.Files = nil
	}
	return pkgs
}

func benchDB(b *testing.B, n int, c Compression) []byte {
	b.Helper()
	var buf bytes.Buffer
	if err := WriteDB(&buf, extraLike(n), WriteOptions{Compression: c}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func BenchmarkReadDB15k(b *testing.B) {
	for _, c := range []Compression{Gzip, Zstd} {
		b.Run(c.String(), func(b *testing.B) {
			data := benchDB(b, 15000, c)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				db, err := ReadDB(bytes.NewReader(data))
				if err != nil || len(db.Packages) != 15000 {
					b.Fatalf("ReadDB: %v, %d packages", err, len(db.Packages))
				}
			}
		})
	}
}

func BenchmarkWriteDB15k(b *testing.B) {
	pkgs := extraLike(15000)
	for _, c := range []Compression{Gzip, Zstd} {
		b.Run(c.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := WriteDB(io.Discard, pkgs, WriteOptions{Compression: c}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadPackage(b *testing.B) {
	var buf bytes.Buffer
	if err := WritePackage(&buf, fixturePKGINFO(1), fixtureFiles(1), Zstd); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	for _, list := range []bool{false, true} {
		b.Run(map[bool]string{false: "pkginfo", true: "listfiles"}[list], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ReadPackage(bytes.NewReader(data), ReadOptions{ListFiles: list}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVercmp(b *testing.B) {
	for b.Loop() {
		Vercmp("1:2.40+r16+gaa533d58ff-2", "1:2.40+r16+gaa533d58ff-3")
	}
}
