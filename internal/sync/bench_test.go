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

// benchSigSize is the size of an Arch package signature (an ed25519 or
// RSA-4096 detached binary signature is 119 to 566 bytes).
const benchSigSize = 119

// benchRepo builds (once, cached in the temp folder) an upstream core repo
// of benchPackages small packages with realistic desc fields, each with a
// .sig beside it and none in the db (as Arch publishes them since 2022),
// and returns its root and the file names (packages and signatures).
func benchRepo(b *testing.B) (string, []string) {
	b.Helper()
	root := filepath.Join(os.TempDir(), fmt.Sprintf("mirrord-bench-sync-%d-sigs", benchPackages))
	dir := filepath.Join(root, archDir)
	var names []string
	for i := range benchPackages {
		names = append(names, fmt.Sprintf("pkg%05d-1.%d-1-x86_64.pkg.tar.zst", i, i%7))
	}
	files := make([]string, 0, 2*len(names))
	for _, n := range names {
		files = append(files, n, n+".sig")
	}
	if _, err := os.Stat(filepath.Join(root, "done")); err == nil {
		return root, files
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
			sig := bytes.Repeat([]byte{byte(i)}, benchSigSize)
			if err := os.WriteFile(path+".sig", sig, 0o644); err != nil {
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
		os.Symlink("core"+kind.ext, filepath.Join(dir, "core"+kind.ext+".tar.gz")) // repo-add's layout
	}
	os.WriteFile(filepath.Join(root, "lastupdate"), []byte("1000\n"), 0o644)
	os.WriteFile(filepath.Join(root, "done"), nil, 0o644)
	return root, files
}

func maxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss << 10 // KiB on Linux
}

// benchRounds is how many times BenchmarkSync15k runs each contender.
// The machine is shared and its file system slow to allocate inodes at
// times, so a single run of each says more about the moment than about
// the code: the rounds rotate the order, and each contender's best time
// is compared.
const benchRounds = 3

// BenchmarkSync15k syncs the synthetic repo into an empty tree, checks
// that the tree equals upstream's folder, resyncs with no change upstream,
// and runs the baselines: a plain Go downloader and (if installed) wget,
// both at sync.concurrency over the same files (packages and signatures).
// Each runs benchRounds times, in rotating order; the metrics are the
// best of each, and ratio is the sync's best over the better baseline's.
// Run: go test -run '^$' -bench Sync15k -benchtime 1x ./internal/sync/
func BenchmarkSync15k(b *testing.B) {
	root, names := benchRepo(b)
	up := faultserver.NewTest(b, root)
	const conc = 4
	urls := make([]string, len(names))
	for i, n := range names {
		urls[i] = up.URL() + "/" + archDir + "/" + n
	}
	type contender struct {
		name string
		run  func(dir string) time.Duration
		best time.Duration
	}
	var nochange time.Duration
	sync := &contender{name: "sync-s", run: func(dir string) time.Duration {
		cfg := mirrorConfig(dir, "archlinux", "$repo/os/$arch", []string{"x86_64"}, []string{up.URL() + "/$repo/os/$arch"}, "core")
		cfg.Sync.Concurrency = conc
		e := newEnv(b, cfg)
		defer e.close()
		up.Reset()
		settle(b)
		start := time.Now()
		if err := e.sched.Sync(b.Context(), "archlinux", "core"); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		if nochange == 0 { // the first round
			b.ReportMetric(float64(up.Total()), "requests")
			b.ReportMetric(float64(e.sched.States()[0].Bytes), "bytes")
			b.ReportMetric(float64(maxRSS())/(1<<20), "peak-RSS-MiB")
			sameTree(b, listFiles(b, filepath.Join(e.tree(), "archlinux", archDir), nil), listFiles(b, filepath.Join(root, archDir), nil))
		}
		start = time.Now()
		if err := e.sched.Sync(b.Context(), "archlinux", "core"); err != nil {
			b.Fatal(err)
		}
		if d := time.Since(start); nochange == 0 || d < nochange {
			nochange = d
		}
		return took
	}}
	contenders := []*contender{sync, {name: "go-baseline-s", run: func(dir string) time.Duration {
		settle(b)
		start := time.Now()
		goDownload(b, urls, dir, conc)
		return time.Since(start)
	}}}
	if _, err := exec.LookPath("wget"); err == nil {
		contenders = append(contenders, &contender{name: "wget-baseline-s", run: func(dir string) time.Duration {
			settle(b)
			start := time.Now()
			wgetDownload(b, urls, dir, conc)
			return time.Since(start)
		}})
	}
	for b.Loop() {
		for round := range benchRounds {
			for i := range contenders {
				c := contenders[(round+i)%len(contenders)]
				dir := b.TempDir()
				d := c.run(dir)
				b.Logf("round %d: %s %.2f", round+1, c.name, d.Seconds())
				if c.best == 0 || d < c.best {
					c.best = d
				}
				os.RemoveAll(dir) // keep the file system's state alike for the next ones
			}
		}
	}
	b.StopTimer()
	best := time.Duration(0)
	for _, c := range contenders {
		b.ReportMetric(c.best.Seconds(), c.name)
		if c != sync && (best == 0 || c.best < best) {
			best = c.best
		}
	}
	b.ReportMetric(nochange.Seconds(), "nochange-s")
	b.ReportMetric(sync.best.Seconds()/best.Seconds(), "ratio")
}

// settle writes back the dirty pages of the runs before, so that each
// timed run starts from the same state and none pays for another's
// writeback.
func settle(b *testing.B) {
	b.Helper()
	syscall.Sync()
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
