package alpm

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestCompatRepoAddPacman builds the same packages into one db with the
// real repo-add and one with WriteDB, then checks that every desc and files
// entry is byte-identical and that the real pacman reads our db and prints
// the same -Si, -Ss, -Sl and -Fl output for it as for repo-add's.
func TestCompatRepoAddPacman(t *testing.T) {
	repoAdd := needTool(t, "repo-add")
	pacman := needTool(t, "pacman")
	needTool(t, "bsdtar")
	if os.Geteuid() != 0 {
		t.Skip("pacman -Sy needs root")
	}
	dir := t.TempDir()
	pkgDir := filepath.Join(dir, "pkgs")
	must(t, os.MkdirAll(pkgDir, 0o755))
	comps := []Compression{Zstd, Gzip, Xz, None}
	var paths []string
	for i, c := range comps {
		// 12 packages per compression, distinct names across groups.
		for j := 0; j < 12; j++ {
			n := i*12 + j
			pi := fixturePKGINFO(n)
			var buf bytes.Buffer
			must(t, WritePackage(&buf, pi, fixtureFiles(n), c))
			fn := FileName{Name: pi.Name, Version: pi.Version, Arch: pi.Arch, Ext: ".pkg.tar" + c.Ext()}
			p := filepath.Join(pkgDir, fn.String())
			must(t, os.WriteFile(p, buf.Bytes(), 0o644))
			paths = append(paths, p)
		}
	}
	// repo-add 6.0.2 puts a package's .sig into %PGPSIG% on its own.
	sig := make([]byte, 310)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range sig {
		sig[i] = byte(r.Uint32())
	}
	must(t, os.WriteFile(paths[5]+".sig", sig, 0o644))

	refDir := filepath.Join(dir, "ref")
	mineDir := filepath.Join(dir, "mine")
	must(t, os.MkdirAll(refDir, 0o755))
	must(t, os.MkdirAll(mineDir, 0o755))
	cmd := exec.Command(repoAdd, append([]string{"-q", filepath.Join(refDir, "test.db.tar.gz")}, paths...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("repo-add: %v\n%s", err, out)
	}

	var pkgs []*Package
	for _, path := range paths {
		p, err := ReadPackageFile(path, ReadOptions{ListFiles: true})
		must(t, err)
		if sig, err := os.ReadFile(path + ".sig"); err == nil {
			p.PGPSig, err = EncodeSig(sig)
			must(t, err)
		}
		pkgs = append(pkgs, p)
	}
	for _, kind := range []string{"db", "files"} {
		var buf bytes.Buffer
		must(t, WriteDB(&buf, pkgs, WriteOptions{Files: kind == "files"}))
		name := "test." + kind + ".tar.gz"
		must(t, os.WriteFile(filepath.Join(mineDir, name), buf.Bytes(), 0o644))
		must(t, os.Symlink(name, filepath.Join(mineDir, "test."+kind)))

		ref := tarEntries(t, filepath.Join(refDir, name))
		mine := tarEntries(t, filepath.Join(mineDir, name))
		t.Logf("%s: %d entries compared byte for byte", kind, len(ref))
		if len(ref) != len(mine) {
			t.Errorf("%s: repo-add wrote %d entries, WriteDB %d", kind, len(ref), len(mine))
		}
		for k, want := range ref {
			if got, ok := mine[k]; !ok {
				t.Errorf("%s: entry %s missing from WriteDB's db", kind, k)
			} else if got != want {
				t.Errorf("%s: entry %s = %q, want %q (repo-add)", kind, k, got, want)
			}
		}

		// And the parsed form: every field equal.
		refDB := readDBFile(t, filepath.Join(refDir, name))
		mineDB := readDBFile(t, filepath.Join(mineDir, name))
		byName := make(map[string]*Package)
		for _, p := range refDB.Packages {
			byName[p.Name] = p
		}
		for _, p := range mineDB.Packages {
			if want := byName[p.Name]; !reflect.DeepEqual(p, want) {
				t.Errorf("%s: ReadDB(ours) %s = %+v, want %+v", kind, p.Name, p, want)
			}
		}
	}

	// pacman fetches packages from the same directory as the db.
	for _, path := range paths {
		must(t, os.Symlink(path, filepath.Join(mineDir, filepath.Base(path))))
	}
	refOut := pacmanOutputs(t, pacman, filepath.Join(dir, "client-ref"), refDir)
	mineOut := pacmanOutputs(t, pacman, filepath.Join(dir, "client-mine"), mineDir)
	// Downloading every package checks %CSIZE% and %SHA256SUM% from
	// ReadPackage against the files themselves.
	var names []string
	for _, p := range pkgs {
		names = append(names, p.Name)
	}
	swOut := pacmanRun(t, pacman, filepath.Join(dir, "client-mine"), append([]string{"-Swdd"}, names...)...)
	if !strings.Contains(swOut, "checking package integrity") {
		t.Errorf("pacman -Sw did not check package integrity:\n%s", swOut)
	}
	cached, err := filepath.Glob(filepath.Join(dir, "client-mine", "cache", "*.pkg.tar*"))
	must(t, err)
	if len(cached) != len(pkgs) {
		t.Errorf("pacman -Sw cached %d packages, want %d", len(cached), len(pkgs))
	}
	for _, k := range []string{"-Si", "-Ss", "-Sl", "-Fl"} {
		if refOut[k] == "" {
			t.Errorf("pacman %s printed nothing on repo-add's db", k)
		}
		t.Logf("pacman %s: %d bytes, %d lines", k, len(refOut[k]), strings.Count(refOut[k], "\n"))
		if mineOut[k] != refOut[k] {
			t.Errorf("pacman %s on WriteDB's db =\n%s\nwant (repo-add's db)\n%s", k, mineOut[k], refOut[k])
		}
	}
	if got := strings.Count(mineOut["-Si"], "\nName "); got+1 != len(pkgs) && got != len(pkgs) {
		t.Errorf("pacman -Si shows %d packages, want %d", got, len(pkgs))
	}
}

// pacmanOutputs syncs a throwaway root from the db in repoDir and returns
// what pacman prints for -Si, -Ss, -Sl and -Fl.
func pacmanOutputs(t *testing.T, pacman, root, repoDir string) map[string]string {
	t.Helper()
	for _, d := range []string{"root", "db", "cache", "gnupg", "hooks"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	conf := fmt.Sprintf(`[options]
RootDir = %[1]s/root
DBPath = %[1]s/db/
CacheDir = %[1]s/cache/
LogFile = %[1]s/pacman.log
GPGDir = %[1]s/gnupg/
HookDir = %[1]s/hooks/
Architecture = x86_64
SigLevel = Never
[test]
Server = file://%[2]s
`, root, repoDir)
	must(t, os.WriteFile(filepath.Join(root, "pacman.conf"), []byte(conf), 0o644))
	run := func(args ...string) string { return pacmanRun(t, pacman, root, args...) }
	run("-Sy")
	run("-Fy")
	return map[string]string{"-Si": run("-Si"), "-Ss": run("-Ss"), "-Sl": run("-Sl"), "-Fl": run("-Fl")}
}

// pacmanRun runs pacman on the throwaway root and fails on any error or
// anything on stderr (a warning about the db included).
func pacmanRun(t *testing.T, pacman, root string, args ...string) string {
	t.Helper()
	confPath := filepath.Join(root, "pacman.conf")
	cmd := exec.Command(pacman, append([]string{"--config", confPath, "--noconfirm", "--color", "never"}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C", "TZ=UTC")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("pacman %v: %v\n%s%s", args, err, out, stderr.String())
	}
	return string(out)
}

// tarEntries returns every regular file of a (compressed) tar as text.
func tarEntries(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	data, err := io.ReadAll(f)
	must(t, err)
	dr, release := mustDecompress(t, data)
	defer release()
	tr := tar.NewReader(dr)
	m := make(map[string]string)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m
		}
		must(t, err)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			must(t, err)
			m[h.Name] = string(b)
		}
	}
}

func readDBFile(t *testing.T, path string) *DB {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	db, err := ReadDB(f)
	if err != nil {
		t.Fatalf("ReadDB(%s): %v", path, err)
	}
	return db
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
