package sync

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	stdsync "sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/faultserver"
)

const benchPackages = 15_000

// benchRepo builds (once, cached in the temp folder) an upstream core repo
// of benchPackages small packages with realistic desc fields, and returns
// its root and the package file names.
func benchRepo(b *testing.B) (string, []string) {
	b.Helper()
	root := filepath.Join(os.TempDir(), fmt.Sprintf("mirrord-bench-sync-%d", benchPackages))
	dir := filepath.Join(root, archDir)
	var names []string
	for i := range benchPackages {
		names = append(names, fmt.Sprintf("pkg%05d-1.%d-1-x86_64.pkg.tar.zst", i, i%7))
	}
	if _, err := os.Stat(filepath.Join(root, "done")); err == nil {
		return root, names
	}
	os.RemoveAll(root)
	os.MkdirAll(dir, 0o755)
	pkgs := make([]*alpm.Package, benchPackages)
	var g errgroup.Group
	g.SetLimit(4)
	for i := range benchPackages {
		g.Go(func() error {
			name := fmt.Sprintf("pkg%05d", i)
			pi := &alpm.PKGINFO{Package: alpm.Package{Name: name, Base: name, Version: fmt.Sprintf("1.%d-1", i%7),
				Desc: "A synthetic package for the sync benchmark, number " + name, URL: "https://example.org/" + name,
				BuildDate: 1795824270, Packager: "Bench Packager <bench@example.org>", ISize: 4096, Arch: "x86_64",
				Licenses: []string{"GPL-3.0-or-later"}, Groups: []string{"bench"},
				Depends:    []string{"glibc", "zlib", fmt.Sprintf("pkg%05d", (i+1)%benchPackages)},
				OptDepends: []string{"python: for the scripts"}, Provides: []string{name + "-virtual=1"}}}
			var buf bytes.Buffer
			body := bytes.Repeat([]byte(name+" payload "), 200+i%300)
			files := []alpm.PackageFile{{Name: "usr/share/" + name + "/data", Body: body}, {Name: "usr/bin/" + name, Body: []byte("#!/bin/sh\n")}}
			if err := alpm.WritePackage(&buf, pi, files, alpm.Zstd); err != nil {
				return err
			}
			path := filepath.Join(dir, names[i])
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				return err
			}
			p, err := alpm.ReadPackage(bytes.NewReader(buf.Bytes()), alpm.ReadOptions{ListFiles: true})
			if err != nil {
				return err
			}
			p.Filename = names[i]
			pkgs[i] = p
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	for _, kind := range []struct {
		ext   string
		files bool
	}{{".db", false}, {".files", true}} {
		var buf bytes.Buffer
		if err := alpm.WriteDB(&buf, pkgs, alpm.WriteOptions{Files: kind.files}); err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "core"+kind.ext), buf.Bytes(), 0o644)
	}
	os.WriteFile(filepath.Join(root, "lastupdate"), []byte("1000\n"), 0o644)
	os.WriteFile(filepath.Join(root, "done"), nil, 0o644)
	return root, names
}

func maxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss << 10 // KiB on Linux
}

// BenchmarkSync15k syncs the synthetic repo into an empty tree, then
// resyncs with no change upstream, and runs the baselines: a plain Go
// downloader and (if installed) wget, both at sync.concurrency.
// Run: go test -run '^$' -bench Sync15k -benchtime 1x ./internal/sync/
func BenchmarkSync15k(b *testing.B) {
	root, names := benchRepo(b)
	up := faultserver.NewTest(b, root)
	const conc = 4
	for b.Loop() {
		cfg := mirrorConfig(b.TempDir(), "archlinux", "$repo/os/$arch", []string{"x86_64"}, []string{up.URL() + "/$repo/os/$arch"}, "core")
		cfg.Sync.Concurrency = conc
		e := newEnv(b, cfg)
		up.Reset()
		start := time.Now()
		if err := e.sched.Sync(b.Context(), "archlinux", "core"); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		st := e.sched.States()[0]
		b.ReportMetric(took.Seconds(), "sync-s")
		b.ReportMetric(float64(up.Total()), "requests")
		b.ReportMetric(float64(st.Bytes), "bytes")
		b.ReportMetric(float64(maxRSS())/(1<<20), "peak-RSS-MiB")

		start = time.Now()
		if err := e.sched.Sync(b.Context(), "archlinux", "core"); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "nochange-s")
		e.close()
	}
	b.StopTimer()

	urls := make([]string, len(names))
	for i, n := range names {
		urls[i] = up.URL() + "/" + archDir + "/" + n
	}
	start := time.Now()
	goDownload(b, urls, b.TempDir(), conc)
	b.ReportMetric(time.Since(start).Seconds(), "go-baseline-s")
	if _, err := exec.LookPath("wget"); err == nil {
		start = time.Now()
		wgetDownload(b, urls, b.TempDir(), conc)
		b.ReportMetric(time.Since(start).Seconds(), "wget-baseline-s")
	}
}

// goDownload is the baseline: GET every URL into dir, conc at a time,
// with a plain http.Client and no checks.
func goDownload(b *testing.B, urls []string, dir string, conc int) {
	var g errgroup.Group
	g.SetLimit(conc)
	for _, u := range urls {
		g.Go(func() error {
			resp, err := http.Get(u)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(dir, filepath.Base(u)))
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(f, resp.Body)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

// wgetDownload runs conc wget processes over shares of the URL list (wget
// itself downloads one file at a time).
func wgetDownload(b *testing.B, urls []string, dir string, conc int) {
	var wg stdsync.WaitGroup
	for i := range conc {
		var list bytes.Buffer
		for j := i; j < len(urls); j += conc {
			list.WriteString(urls[j] + "\n")
		}
		wg.Go(func() {
			cmd := exec.Command("wget", "-q", "-P", dir, "-i", "-")
			cmd.Stdin = &list
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Errorf("wget: %v\n%s", err, out)
			}
		})
	}
	wg.Wait()
}
