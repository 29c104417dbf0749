// Command alpmdb builds and compares pacman repository databases with
// internal/alpm. It exists for scripts/bench-db.sh, which times it against
// repo-add, and for poking at dbs by hand:
//
//	alpmdb gen -n 1000 -dir pkgs            write n test packages (zstd)
//	alpmdb build [-zstd] REPO.db.tar.gz PKG...   what repo-add does: .db and .files
//	alpmdb cmp A.db B.db                    exit 1 unless both hold the same entries
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/mirrord/mirrord/internal/alpm"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "build":
		err = build(os.Args[2:])
	case "cmp":
		err = cmp(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alpmdb:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: alpmdb gen -n N -dir DIR | build [-zstd] REPO.db.tar.EXT PKG... | cmp A B")
	os.Exit(2)
}

// gen writes n packages of a few to a few hundred KiB, with .BUILDINFO and
// .MTREE before .PKGINFO as makepkg orders them.
func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	n := fs.Int("n", 1000, "number of packages")
	dir := fs.String("dir", "pkgs", "output directory")
	fs.Parse(args)
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	for i := 0; i < *n; i++ {
		r := rand.New(rand.NewPCG(uint64(i), 1))
		name := fmt.Sprintf("bench-pkg%04d", i)
		pi := &alpm.PKGINFO{Package: alpm.Package{
			Name: name, Base: name, Version: fmt.Sprintf("%d.%d-%d", r.IntN(10), r.IntN(100), 1+r.IntN(3)),
			Desc: "benchmark package " + name, URL: "https://example.org/" + name,
			BuildDate: 1790000000 + int64(i), Packager: "Bench <bench@example.org>",
			Arch: "x86_64", Licenses: []string{"MIT"}, XData: []string{"pkgtype=pkg"},
		}}
		for j := 0; j < r.IntN(6); j++ {
			pi.Depends = append(pi.Depends, fmt.Sprintf("bench-pkg%04d", r.IntN(*n)))
		}
		files := []alpm.PackageFile{
			{Name: ".BUILDINFO", Body: []byte("format = 2\npkgname = " + name + "\n")},
			{Name: ".MTREE", Body: []byte("#mtree\n")},
		}
		for j := 0; j < 3+r.IntN(20); j++ {
			body := make([]byte, r.IntN(16<<10))
			for k := range body {
				body[k] = byte('a' + r.IntN(8)) // compressible, like real files
			}
			pi.ISize += int64(len(body))
			files = append(files, alpm.PackageFile{Name: fmt.Sprintf("usr/share/%s/file%02d", name, j), Body: body})
		}
		var buf bytes.Buffer
		if err := alpm.WritePackage(&buf, pi, files, alpm.Zstd); err != nil {
			return err
		}
		fn := alpm.FileName{Name: pi.Name, Version: pi.Version, Arch: pi.Arch, Ext: ".pkg.tar.zst"}
		if err := os.WriteFile(filepath.Join(*dir, fn.String()), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// build does what `repo-add REPO.db.tar.gz PKG...` does on a new repo:
// reads every package (sums, file list, .sig if present) and writes
// REPO.db.tar.EXT and REPO.files.tar.EXT with the REPO.db and REPO.files
// symlinks. Packages are read on every CPU.
func build(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	useZstd := fs.Bool("zstd", false, "write zstd instead of gzip")
	fs.Parse(args)
	if fs.NArg() < 1 {
		usage()
	}
	dbPath, paths := fs.Arg(0), fs.Args()[1:]
	pkgs := make([]*alpm.Package, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				pkgs[i], errs[i] = readOne(paths[i])
			}
		})
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	comp := alpm.Gzip
	if *useZstd {
		comp = alpm.Zstd
	}
	prefix, _, ok := strings.Cut(dbPath, ".db.tar")
	if !ok {
		return fmt.Errorf("%s: want REPO.db.tar.EXT", dbPath)
	}
	for _, kind := range []string{"db", "files"} {
		target := prefix + "." + kind + ".tar" + comp.Ext()
		if err := writeDB(target, pkgs, alpm.WriteOptions{Files: kind == "files", Compression: comp}); err != nil {
			return err
		}
		link := prefix + "." + kind
		os.Remove(link)
		if err := os.Symlink(filepath.Base(target), link); err != nil {
			return err
		}
	}
	return nil
}

func readOne(path string) (*alpm.Package, error) {
	p, err := alpm.ReadPackageFile(path, alpm.ReadOptions{ListFiles: true})
	if err != nil {
		return nil, err
	}
	if sig, err := os.ReadFile(path + ".sig"); err == nil {
		if p.PGPSig, err = alpm.EncodeSig(sig); err != nil {
			return nil, fmt.Errorf("%s.sig: %w", path, err)
		}
	}
	return p, nil
}

// writeDB writes next to the target and renames, as repo-add does.
func writeDB(target string, pkgs []*alpm.Package, opts alpm.WriteOptions) error {
	tmp := filepath.Join(filepath.Dir(target), ".tmp."+filepath.Base(target))
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := alpm.WriteDB(f, pkgs, opts); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, target)
}

// cmp compares two dbs entry by entry through their desc and files text.
func cmp(args []string) error {
	if len(args) != 2 {
		usage()
	}
	var entries [2]map[string]string
	for i, path := range args {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		db, err := alpm.ReadDB(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		entries[i] = make(map[string]string)
		for _, p := range db.Packages {
			entries[i][p.EntryName()] = string(p.MarshalDesc()) + string(p.MarshalFiles())
		}
	}
	diff := 0
	for k, a := range entries[0] {
		if b, ok := entries[1][k]; !ok || a != b {
			diff++
			if diff <= 5 {
				fmt.Fprintf(os.Stderr, "%s differs:\n%s\n---\n%s\n", k, a, b)
			}
		}
	}
	if diff > 0 || len(entries[0]) != len(entries[1]) {
		return fmt.Errorf("%s and %s differ: %d entries of %d/%d", args[0], args[1], diff, len(entries[0]), len(entries[1]))
	}
	fmt.Printf("%d entries identical\n", len(entries[0]))
	return nil
}
