package hosted

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/alpm"
)

// benchPackage is a package with a realistic desc and a dozen files.
func benchPackage(t testing.TB, i int) []byte {
	pi := &alpm.PKGINFO{Package: alpm.Package{
		Name: fmt.Sprintf("bench-pkg%05d", i), Base: fmt.Sprintf("bench-pkg%05d", i), Version: "1.2.3-1",
		Desc: "a package for benchmarks with a description of ordinary length", Arch: "x86_64",
		URL: "https://example.org/bench", BuildDate: 1795824270, Packager: "bench <b@example.org>", ISize: 4096,
		Licenses: []string{"MIT"}, Depends: []string{"glibc", "zlib>=1.2", "openssl"}, Provides: []string{"bench-virtual"},
	}}
	var files []alpm.PackageFile
	for k := range 12 {
		files = append(files, alpm.PackageFile{Name: fmt.Sprintf("usr/share/bench/%05d/file%02d", i, k), Body: []byte("data\n")})
	}
	f, err := os.CreateTemp("", "bench-*.pkg.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := alpm.WritePackage(f, pi, files, alpm.Zstd); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// BenchmarkPublish1000 publishes 1,000 packages through staging, the
// workers and the index, and waits for the rebuilt db.
func BenchmarkPublish1000(b *testing.B) {
	pkgs := make([][]byte, 1000)
	for i := range pkgs {
		pkgs[i] = benchPackage(b, i)
	}
	cfg := testConfig()
	cfg.Hosted.MaxDelay = time.Minute
	for b.Loop() {
		b.StopTimer()
		e := newEnv(b, b.TempDir(), cfg, true)
		b.StartTimer()
		for _, p := range pkgs {
			if _, err := e.submit("local", p, nil, false); err != nil {
				b.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := e.svc.WaitIdle(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		b.StopTimer()
		e.stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/1000, "ms/package")
}

// BenchmarkBuild15000 builds the .db and .files of a 15,000-entry index.
func BenchmarkBuild15000(b *testing.B) {
	pkgs := indexOf(b, 15000)
	e := newEnv(b, b.TempDir(), testConfig(), false)
	r := e.svc.repos["archlinux/local"]
	for b.Loop() {
		if err := e.svc.build(r.key, r.dirs["x86_64"], "local", nil, pkgs); err != nil {
			b.Fatal(err)
		}
	}
	e.stop()
}

// indexOf is what the index holds for n bench packages: parsed once, as
// a worker does, files listed.
func indexOf(t testing.TB, n int) []*alpm.Package {
	tmpl, err := alpm.ReadPackage(bytesReader(benchPackage(t, 0)), alpm.ReadOptions{ListFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	pkgs := make([]*alpm.Package, n)
	for i := range pkgs {
		p := *tmpl
		p.Name = fmt.Sprintf("bench-pkg%05d", i)
		p.Base = p.Name
		p.Filename = p.Name + "-" + p.Version + "-x86_64.pkg.tar.zst"
		p.Files = append([]string(nil), tmpl.Files...)
		pkgs[i] = &p
	}
	return pkgs
}

// TestRebuildVsRepoAdd compares building a db from the index with
// repo-add adding the same packages. It runs only when
// MIRRORD_BENCH_REPOADD=N is set (N packages; repo-add takes minutes for
// 15,000):  MIRRORD_BENCH_REPOADD=15000 go test -run RebuildVsRepoAdd -v ./internal/hosted/
func TestRebuildVsRepoAdd(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MIRRORD_BENCH_REPOADD"))
	if n <= 0 {
		t.Skip("set MIRRORD_BENCH_REPOADD=N to run")
	}
	if _, err := exec.LookPath("repo-add"); err != nil {
		t.Fatal("repo-add is required")
	}
	dir := t.TempDir()
	var files []string
	var pkgs []*alpm.Package
	for i := range n {
		data := benchPackage(t, i)
		p, err := alpm.ReadPackage(bytesReader(data), alpm.ReadOptions{ListFiles: true})
		if err != nil {
			t.Fatal(err)
		}
		p.Filename = p.Name + "-" + p.Version + "-" + p.Arch + ".pkg.tar.zst"
		path := filepath.Join(dir, p.Filename)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
		pkgs = append(pkgs, p)
	}
	e := newEnv(t, "", testConfig(), false)
	r := e.svc.repos["archlinux/local"]
	start := time.Now()
	if err := e.svc.build(r.key, r.dirs["x86_64"], "local", nil, pkgs); err != nil {
		t.Fatal(err)
	}
	ours := time.Since(start)

	start = time.Now()
	out, err := exec.Command("repo-add", append([]string{"-q", filepath.Join(t.TempDir(), "bench.db.tar.gz")}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("repo-add: %v\n%s", err, out)
	}
	theirs := time.Since(start)
	t.Logf("%d packages, .db + .files (gzip): index rebuild %v, repo-add %v, ratio %.0fx", n, ours.Round(time.Millisecond), theirs.Round(time.Millisecond), theirs.Seconds()/ours.Seconds())
	if ours > 2*time.Second {
		t.Errorf("rebuild of %d entries took %v, want under 2s", n, ours)
	}
	if theirs < 20*ours {
		t.Errorf("rebuild only %.1fx faster than repo-add, want 20x", theirs.Seconds()/ours.Seconds())
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
