package alpm

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// fixtureDBPackages returns n packages as ReadPackage would fill them.
func fixtureDBPackages(n int) []*Package {
	pkgs := make([]*Package, n)
	for i := range pkgs {
		p := fixturePKGINFO(i).Package
		p.Desc = normalizeSpace(p.Desc)
		fn := FileName{Name: p.Name, Version: p.Version, Arch: p.Arch, Ext: ".pkg.tar.zst"}
		p.Filename = fn.String()
		p.CSize = int64(10000 + i)
		p.MD5Sum = strings.Repeat("ab", 16)
		p.SHA256Sum = strings.Repeat("cd", 32)
		p.Files = []string{"usr/", "usr/bin/", "usr/bin/tool"}
		pkgs[i] = &p
	}
	return pkgs
}

// asRead is what a db round trip gives back: fields desc does not carry
// are dropped.
func asRead(p *Package, files bool) *Package {
	q := *p
	q.Backup, q.XData = nil, nil
	if !files {
		q.Files = nil
	}
	return &q
}

func TestDBRoundTrip(t *testing.T) {
	pkgs := fixtureDBPackages(30)
	for _, c := range []Compression{Gzip, Zstd, None} {
		for _, files := range []bool{false, true} {
			t.Run(c.String()+map[bool]string{false: "-db", true: "-files"}[files], func(t *testing.T) {
				var buf bytes.Buffer
				if err := WriteDB(&buf, pkgs, WriteOptions{Compression: c, Files: files}); err != nil {
					t.Fatalf("WriteDB: %v", err)
				}
				db, err := ReadDB(&buf)
				if err != nil {
					t.Fatalf("ReadDB: %v", err)
				}
				if db.Compression != c {
					t.Errorf("ReadDB().Compression = %v, want %v", db.Compression, c)
				}
				if len(db.Packages) != len(pkgs) {
					t.Fatalf("ReadDB() has %d packages, want %d", len(db.Packages), len(pkgs))
				}
				byName := map[string]*Package{}
				for _, p := range db.Packages {
					byName[p.Name] = p
				}
				for _, p := range pkgs {
					if got, want := byName[p.Name], asRead(p, files); !reflect.DeepEqual(got, want) {
						t.Errorf("ReadDB(WriteDB()) %s = %+v, want %+v", p.Name, got, want)
					}
				}
			})
		}
	}
}

// TestReadDBCompressions reads the same tar compressed by the real tools
// (and ulikunitz/xz), which is how upstream dbs arrive.
func TestReadDBCompressions(t *testing.T) {
	pkgs := fixtureDBPackages(5)
	var plain bytes.Buffer
	must(t, WriteDB(&plain, pkgs, WriteOptions{Compression: None}))
	var xzBuf bytes.Buffer
	xw, err := xz.NewWriter(&xzBuf)
	must(t, err)
	_, err = xw.Write(plain.Bytes())
	must(t, err)
	must(t, xw.Close())
	inputs := map[string][]byte{"xz-go": xzBuf.Bytes()}
	for _, tool := range []string{"bzip2", "xz", "gzip", "zstd"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			continue
		}
		cmd := exec.Command(path, "-c")
		cmd.Stdin = bytes.NewReader(plain.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s -c: %v", tool, err)
		}
		inputs[tool] = out
	}
	wantComp := map[string]Compression{"xz-go": Xz, "bzip2": Bzip2, "xz": Xz, "gzip": Gzip, "zstd": Zstd}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			db, err := ReadDB(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("ReadDB(%s): %v", name, err)
			}
			if db.Compression != wantComp[name] || len(db.Packages) != len(pkgs) {
				t.Errorf("ReadDB(%s) = %v with %d packages, want %v with %d", name, db.Compression, len(db.Packages), wantComp[name], len(pkgs))
			}
		})
	}
}

func TestWriteDBDeterministic(t *testing.T) {
	pkgs := fixtureDBPackages(40)
	var a, b bytes.Buffer
	must(t, WriteDB(&a, pkgs, WriteOptions{Files: true}))
	shuffled := slices.Clone(pkgs)
	slices.Reverse(shuffled)
	shuffled[3], shuffled[17] = shuffled[17], shuffled[3]
	must(t, WriteDB(&b, shuffled, WriteOptions{Files: true}))
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("WriteDB output depends on input order")
	}
	if pkgs[0] != shuffled[len(shuffled)-1] {
		t.Errorf("WriteDB reordered its input slice")
	}

	// Entries sorted, owned by root, stamped with the fixed time.
	dr, release := mustDecompress(t, a.Bytes())
	defer release()
	tr := tar.NewReader(dr)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Uname != "root" || h.Gname != "root" || h.Uid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("entry %s: owner %s:%s uid %d mtime %v, want root:root 0 epoch", h.Name, h.Uname, h.Gname, h.Uid, h.ModTime)
		}
		names = append(names, h.Name)
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries not sorted: %v", names)
	}
}

// TestWriteDBGolden pins the exact bytes, so a change in the writer (or in
// the compressor library) shows up in review.
func TestWriteDBGolden(t *testing.T) {
	for _, c := range []Compression{Gzip, Zstd} {
		var buf bytes.Buffer
		must(t, WriteDB(&buf, fixtureDBPackages(6), WriteOptions{Files: true, Compression: c, ModTime: time.Unix(1790000000, 0)}))
		golden := filepath.Join("testdata", "golden.files.tar"+c.Ext())
		if *update {
			must(t, os.WriteFile(golden, buf.Bytes(), 0o644))
		}
		want, err := os.ReadFile(golden)
		must(t, err)
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("WriteDB(%v) differs from %s (run go test -update if intended)", c, golden)
		}
	}
}

func TestWriteDBErrors(t *testing.T) {
	base := func() *Package {
		return &Package{Name: "a", Version: "1-1", Filename: "a-1-1-any.pkg.tar.zst", Arch: "any"}
	}
	tests := []struct {
		name   string
		mutate func(p *Package)
	}{
		{"bad name", func(p *Package) { p.Name = "-a" }},
		{"bad version", func(p *Package) { p.Version = "1" }},
		{"no filename", func(p *Package) { p.Filename = "" }},
		{"filename with slash", func(p *Package) { p.Filename = "x/a-1-1-any.pkg.tar.zst" }},
		{"newline in desc", func(p *Package) { p.Desc = "one\n%NAME%" }},
		{"empty depend", func(p *Package) { p.Depends = []string{"x", ""} }},
		{"newline in file", func(p *Package) { p.Files = []string{"usr/a\nb"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mutate(p)
			if err := WriteDB(&bytes.Buffer{}, []*Package{p}, WriteOptions{Files: true}); err == nil {
				t.Errorf("WriteDB(%+v) = nil, want an error", p)
			}
		})
	}
	a, b := base(), base()
	b.Version = "2-1"
	if err := WriteDB(&bytes.Buffer{}, []*Package{a, b}, WriteOptions{}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("WriteDB(two versions of a) = %v, want ErrDuplicate", err)
	}
	if err := WriteDB(&bytes.Buffer{}, []*Package{a}, WriteOptions{Compression: Bzip2}); err == nil {
		t.Errorf("WriteDB(bzip2) = nil, want an error")
	}
}

func TestReadDBEmpty(t *testing.T) {
	var buf bytes.Buffer
	must(t, WriteDB(&buf, nil, WriteOptions{}))
	db, err := ReadDB(&buf)
	if err != nil || len(db.Packages) != 0 {
		t.Errorf("ReadDB(empty db) = %+v, %v, want no packages", db, err)
	}
}

// rawTar builds a tar from name/content pairs, for malformed dbs.
func rawTar(t testing.TB, entries ...string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(entries); i += 2 {
		must(t, tw.WriteHeader(&tar.Header{Name: entries[i], Mode: 0o644, Size: int64(len(entries[i+1])), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(entries[i+1]))
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func TestReadDBErrors(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"name mismatch", rawTar(t, "a-1-1/desc", "%NAME%\nb\n\n"), "%NAME%"},
		{"version mismatch", rawTar(t, "a-1-1/desc", "%VERSION%\n2-1\n\n"), "%VERSION%"},
		{"bad dir", rawTar(t, "nodashes/desc", "%NAME%\nnodashes\n\n"), "not name-pkgver-pkgrel"},
		{"bad filename", rawTar(t, "a-1-1/desc", "%FILENAME%\n../x\n\n"), "invalid package file name"},
		{"not a tar", []byte("this is not a tar archive, not at all, no.........."), "read db"},
		{"truncated gzip", func() []byte {
			var buf bytes.Buffer
			must(t, WriteDB(&buf, fixtureDBPackages(20), WriteOptions{}))
			return buf.Bytes()[:buf.Len()/2]
		}(), "read db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadDB(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ReadDB(%s) error = %v, want one containing %q", tc.name, err, tc.wantErr)
			}
			_, _, err = CheckDB(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("CheckDB(%s) error = %v, want one containing %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

// CheckDB reads what ReadDB reads, keeping no file lists: the retained
// budget does not count them, so a .files db over it still checks.
func TestCheckDB(t *testing.T) {
	pkgs := fixtureDBPackages(50)
	for _, p := range pkgs {
		for i := range 200 {
			p.Files = append(p.Files, fmt.Sprintf("usr/share/%s/file%03d", p.Name, i))
		}
	}
	var descs, buf bytes.Buffer
	must(t, WriteDB(&descs, pkgs, WriteOptions{Compression: None})) // every desc entry, and tar headers
	must(t, WriteDB(&buf, pkgs, WriteOptions{Files: true, Compression: Zstd}))
	old := maxDBRetained
	maxDBRetained = int64(descs.Len()) // room for the desc entries, not for the file lists too
	t.Cleanup(func() { maxDBRetained = old })
	comp, n, err := CheckDB(bytes.NewReader(buf.Bytes()))
	if err != nil || comp != Zstd || n != 50 {
		t.Fatalf("CheckDB = %v, %d, %v; want zstd, 50, nil", comp, n, err)
	}
	if _, err := ReadDB(bytes.NewReader(buf.Bytes())); err == nil {
		t.Errorf("ReadDB under the same budget succeeded: the budget does not bind, the test proves nothing")
	}
}

// TestReadDBHugeClaim: a header claiming a gigabyte must be refused
// before anything is allocated for it.
func TestReadDBHugeClaim(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: "a-1-1/desc", Mode: 0o644, Size: 1 << 30, Typeflag: tar.TypeReg}))
	// No body: tw.Close would complain; the header alone is the attack.
	_, err := ReadDB(bytes.NewReader(buf.Bytes()))
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("ReadDB(1 GiB desc claim) error = %v, want a size limit error", err)
	}
}

// TestReadDBIgnoresOther: directories, unknown files and deeper paths are
// skipped, and desc and files of one package may be apart.
func TestReadDBIgnoresOther(t *testing.T) {
	data := rawTar(t,
		"a-1-1/desc", "%NAME%\na\n\n%FILENAME%\na-1-1-any.pkg.tar.zst\n\n",
		"b-2-1/desc", "%NAME%\nb\n\n",
		"a-1-1/files", "%FILES%\nusr/\n",
		"a-1-1/mtree", "whatever",
		"a-1-1/x/desc", "%NAME%\nzzz\n\n",
		"README", "hi",
	)
	db, err := ReadDB(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ReadDB: %v", err)
	}
	want := []*Package{
		{Name: "a", Version: "1-1", Filename: "a-1-1-any.pkg.tar.zst", Files: []string{"usr/"}},
		{Name: "b", Version: "2-1"},
	}
	if !reflect.DeepEqual(db.Packages, want) {
		t.Errorf("ReadDB() = %+v, want %+v", db.Packages, want)
	}
}

// TestReadDBStreamCap: an entry that is skipped still has to be
// decompressed, so the whole stream is capped.
func TestReadDBStreamCap(t *testing.T) {
	old := maxDBStream
	maxDBStream = 1 << 20
	t.Cleanup(func() { maxDBStream = old })
	var buf bytes.Buffer
	w, err := compressor(Zstd, &buf)
	must(t, err)
	tw := tar.NewWriter(w)
	must(t, tw.WriteHeader(&tar.Header{Name: "a-1-1/blob", Mode: 0o644, Size: 4 << 20, Typeflag: tar.TypeReg}))
	_, err = tw.Write(make([]byte, 4<<20))
	must(t, err)
	must(t, tw.Close())
	must(t, w.Close())
	if _, err := ReadDB(&buf); err == nil || !strings.Contains(err.Error(), "decompressed") {
		t.Errorf("ReadDB(4 MiB skipped entry, 1 MiB cap) error = %v, want the stream cap", err)
	}
}
