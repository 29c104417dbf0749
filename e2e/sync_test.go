package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/faultserver"
)

// mirrorUpstream builds core/os/x86_64 on a fake upstream with repo-add
// and writes its lastupdate.
func mirrorUpstream(t *testing.T, pkgs []testPackage) (*faultserver.Server, string) {
	t.Helper()
	up := newUpstream(t)
	dir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(dir, 0o755)
	var files []string
	for _, p := range pkgs {
		files = append(files, buildPackage(t, dir, p))
	}
	repoAdd(t, dir, "core", files...)
	os.WriteFile(filepath.Join(up.Root(), "lastupdate"), []byte("1700000000\n"), 0o644)
	return up, dir
}

// mirrorConfigFile writes a config with core as a mirror repo of up.
func mirrorConfigFile(t *testing.T, up *faultserver.Server, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mirrord.yaml")
	cfg := fmt.Sprintf(`
sync: {concurrency: 4}
upstream: {retries: 0}
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%s/$repo/os/$arch"]
    repos:
      core: {mode: mirror}
%s`, up.Addr(), extra)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncCmd is `mirrord sync` on dataDir with the config at cfg.
func syncCmd(dataDir, cfg string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"sync", "--config", cfg, "--data-dir", dataDir}, args...)...)
	cmd.Env = append(os.Environ(), "MIRRORD_LOG_LEVEL=debug")
	return cmd
}

// treeFiles maps the files of dir (links followed, *.old left out, as a
// mirror does not need repo-add's backups) to their bytes.
// packageNames lists the package files among files (no dbs, no sigs).
func packageNames(files map[string][]byte) []string {
	var names []string
	for n := range files {
		if alpm.IsPackageFile(n) {
			names = append(names, n)
		}
	}
	return names
}

func treeFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".old") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func sameFiles(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Errorf("%s: %d bytes in the mirror, %d upstream, equal %v", k, len(got[k]), len(v), bytes.Equal(got[k], v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("mirror has %s, upstream does not", k)
		}
	}
}

func TestSyncThenPacmanWithUpstreamDown(t *testing.T) {
	requireTool(t, "pacman", "repo-add", "bsdtar")
	up, upDir := mirrorUpstream(t, []testPackage{
		{Name: "hello", Version: "1.0-1", Size: 200_000, Depends: []string{"libgreet"}},
		{Name: "libgreet", Version: "2:0.5-3", Size: 50_000},
		{Name: "noarch", Version: "1-1", Arch: "any", Size: 1000},
	})
	cfg := mirrorConfigFile(t, up, "")
	dataDir := t.TempDir()
	if out, err := syncCmd(dataDir, cfg).CombinedOutput(); err != nil {
		t.Fatalf("mirrord sync: %v\n%s", err, out)
	}
	treeDir := filepath.Join(dataDir, "tree/archlinux/core/os/x86_64")
	sameFiles(t, treeFiles(t, treeDir), treeFiles(t, upDir))
	if b, _ := os.ReadFile(filepath.Join(dataDir, "tree/archlinux/lastupdate")); string(b) != "1700000000\n" {
		t.Errorf("lastupdate = %q, want upstream's", b)
	}

	// A second run with nothing changed upstream asks for lastupdate only.
	up.Reset()
	if out, err := syncCmd(dataDir, cfg, "archlinux/core").CombinedOutput(); err != nil {
		t.Fatalf("mirrord sync again: %v\n%s", err, out)
	}
	if n := up.Total(); n != 1 {
		t.Errorf("no-change sync made %d upstream requests, want 1: %v", n, up.Log())
	}
	if out, err := syncCmd(dataDir, cfg, "archlinux/nope").CombinedOutput(); err == nil || !bytes.Contains(out, []byte("not a mirror repo")) {
		t.Errorf("mirrord sync archlinux/nope: %v\n%s\nwant a not-a-mirror-repo error", err, out)
	}

	up.Close()
	d := startDaemon(t, dataDir, mustRead(t, cfg))
	p := newPacmanRoot(t, d.URL+"/archlinux/$repo/os/$arch", "core")
	p.mustRun("-Sy")
	p.mustRun("-S", "hello", "noarch")
	for _, f := range []string{"usr/share/hello/data", "usr/share/libgreet/data", "usr/share/noarch/data"} {
		if !p.installed(f) {
			t.Errorf("%s not installed", f)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSyncSurvivesKill9 kills `mirrord sync` at random points of a
// throttled sync, checks after each kill that the tree is consistent (a
// db only ever names files the tree holds, and every file is whole), and
// that no file verified before a kill is fetched again.
func TestSyncSurvivesKill9(t *testing.T) {
	requireTool(t, "repo-add", "bsdtar")
	var pkgs []testPackage
	for i := range 24 {
		pkgs = append(pkgs, testPackage{Name: fmt.Sprintf("pkg%02d", i), Version: "1.0-1", Size: 40_000 + i*1000})
	}
	up, upDir := mirrorUpstream(t, pkgs)
	want := treeFiles(t, upDir)
	names := packageNames(want)
	// About 0.1 s a package: a sync takes about a second.
	up.SetFault(faultserver.AnyPath, faultserver.Fault{Rate: 400_000})
	cfg := mirrorConfigFile(t, up, "")
	dataDir := t.TempDir()
	treeDir := filepath.Join(dataDir, "tree/archlinux/core/os/x86_64")

	verified := map[string]int{} // file -> upstream requests when it was first seen whole in the tree
	for round := range 4 {
		cmd := syncCmd(dataDir, cfg)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Kill once a random package's request arrived: some are whole,
		// some half written, some not started.
		target := "/core/os/x86_64/" + names[rand.IntN(len(names))]
		select {
		case <-up.Seen(target, up.Requests(target)+1):
			cmd.Process.Kill()
			<-exited
		case err := <-exited:
			t.Logf("round %d: sync ended before the kill: %v", round, err)
		}
		checkConsistent(t, treeDir, want)
		checkTree(t, dataDir, "core")
		for f := range treeFiles(t, treeDir) {
			if _, ok := verified[f]; !ok && alpm.IsPackageFile(f) {
				verified[f] = up.Requests("/core/os/x86_64/" + f)
			}
		}
	}
	up.ClearFaults()
	if out, err := syncCmd(dataDir, cfg).CombinedOutput(); err != nil {
		t.Fatalf("final mirrord sync: %v\n%s", err, out)
	}
	sameFiles(t, treeFiles(t, treeDir), want)
	for f, n := range verified {
		if got := up.Requests("/core/os/x86_64/" + f); got != n {
			t.Errorf("%s fetched again after it was verified: %d requests, was %d", f, got, n)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(dataDir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %d files after the final sync", len(left))
	}
	t.Logf("%d of %d packages were whole before the final run", len(verified), len(names))
}

// checkConsistent fails if the tree's db names a file the tree lacks, or a
// file of the tree differs from upstream's.
func checkConsistent(t *testing.T, treeDir string, want map[string][]byte) {
	t.Helper()
	got := treeFiles(t, treeDir)
	for f, b := range got {
		if !bytes.Equal(b, want[f]) && alpm.IsPackageFile(f) {
			t.Errorf("%s in the tree is not upstream's file (%d bytes, want %d)", f, len(b), len(want[f]))
		}
	}
	db, ok := got["core.db"]
	if !ok {
		return
	}
	parsed, err := alpm.ReadDB(bytes.NewReader(db))
	if err != nil {
		t.Fatalf("core.db in the tree does not parse: %v", err)
	}
	for _, p := range parsed.Packages {
		if _, ok := got[p.Filename]; !ok {
			t.Errorf("core.db names %s, which the tree lacks", p.Filename)
		}
	}
	filepath.WalkDir(filepath.Join(treeDir, "../../../.."), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "fill-") {
			t.Errorf("temp file %s in the tree", p)
		}
		return nil
	})
}
