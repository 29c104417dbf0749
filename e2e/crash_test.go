package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/faultserver"
)

// TestKillDuringFill kills mirrord with SIGKILL while it writes a cold
// file, and checks that after a restart no partial file is visible and
// the file is fetched whole.
func TestKillDuringFill(t *testing.T) {
	up := newUpstream(t)
	dir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(dir, 0o755)
	data := make([]byte, 2<<20)
	rand.Read(data)
	const name = "big-1.0-1-x86_64.pkg.tar.zst"
	os.WriteFile(filepath.Join(dir, name), data, 0o644)
	gate := make(chan struct{})
	defer close(gate)
	up.SetFault("/core/os/x86_64/"+name, faultserver.Fault{Gate: gate, GateAfter: 1 << 20, Times: 1})

	cfg := proxyConfig(up, "")
	dataDir := t.TempDir()
	d := startDaemon(t, dataDir, cfg)
	resp, err := http.Get(d.URL + "/archlinux/core/os/x86_64/" + name)
	if err != nil {
		t.Fatal(err)
	}
	// The gate holds the second half. The client waits for less than the
	// first half: the fill hands its last chunk read (up to 64 KiB) to
	// readers only once the whole body is checked, and waiting for it
	// would let the stall watchdog resume and finish the file first.
	buf := make([]byte, 512<<10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatalf("first quarter: %v", err)
	}
	d.Kill()
	resp.Body.Close()

	if _, err := os.Stat(filepath.Join(dataDir, "tree/archlinux/core/os/x86_64", name)); err == nil {
		t.Fatal("a partial file is in the tree after kill -9")
	}
	d = startDaemon(t, dataDir, cfg)
	if left, _ := os.ReadDir(filepath.Join(dataDir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %d files after restart", len(left))
	}
	code, body, _ := d.get("/archlinux/core/os/x86_64/" + name)
	if code != 200 || !bytes.Equal(body, data) {
		t.Errorf("after restart GET = %d, %d bytes, identical %v", code, len(body), bytes.Equal(body, data))
	}
}

// proxyConfig is core as a proxy repo of up.
func proxyConfig(up *faultserver.Server, extra string) string {
	return fmt.Sprintf(`
upstream: {retries: 0}
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%s/$repo/os/$arch"]
    repos:
      core: {mode: proxy}
%s`, up.Addr(), extra)
}

// TestCrashProxyColdFiles kills mirrord with SIGKILL at random moments
// while many clients fetch cold files through it from a slow upstream,
// and after every kill and restart checks the invariants: no temp file,
// every cached file matches what the db names, and pacman reads the db.
// No client ever got a complete response with wrong bytes. At the end
// every file is served whole.
func TestCrashProxyColdFiles(t *testing.T) {
	requireTool(t, "repo-add", "bsdtar")
	var pkgs []testPackage
	for i := range 48 {
		pkgs = append(pkgs, testPackage{Name: fmt.Sprintf("cold%02d", i), Version: "1.0-1", Size: 100_000 + i*10_000})
	}
	up, upDir := mirrorUpstream(t, pkgs)
	want := treeFiles(t, upDir)
	names := packageNames(want)
	// About 0.1-0.6 s a file: kills land before, during and after fills,
	// and later rounds still find cold files.
	up.SetFault(faultserver.AnyPath, faultserver.Fault{Rate: 1_000_000})
	cfg := proxyConfig(up, "cache: {db_max_age: 1s}\n")
	dataDir := t.TempDir()
	const clients = 16
	n := rounds(3, 25)
	var complete, wrong atomic.Int64
	for round := range n {
		d := startAfterCrash(t, dataDir, cfg)
		var wg stdsync.WaitGroup
		stop := make(chan struct{})
		for c := range clients {
			wg.Go(func() {
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					name := names[mrand.IntN(len(names))]
					if k == 0 && c == 0 {
						name = "core.db"
					}
					code, body, err := rawFetch(d.URL + "/archlinux/core/os/x86_64/" + name)
					if err != nil || code != 200 {
						if err != nil && !isDown(err) {
							t.Logf("round %d: GET %s: %v", round, name, err)
						}
						continue
					}
					complete.Add(1)
					if w, ok := want[name]; ok && name != "core.db" && !bytes.Equal(body, w) {
						wrong.Add(1)
						t.Errorf("round %d: GET %s = 200 with %d bytes that are not upstream's", round, name, len(body))
					}
				}
			})
		}
		time.Sleep(time.Duration(20+mrand.IntN(800)) * time.Millisecond) // a random moment, by design
		d.Kill()
		close(stop)
		wg.Wait()
		checkTree(t, dataDir)
		if t.Failed() {
			t.FailNow()
		}
	}
	up.ClearFaults()
	d := startAfterCrash(t, dataDir, cfg)
	for _, name := range names {
		if code, body, _ := d.get("/archlinux/core/os/x86_64/" + name); code != 200 || !bytes.Equal(body, want[name]) {
			t.Errorf("after %d kills GET %s = %d, %d bytes, want upstream's %d", n, name, code, len(body), len(want[name]))
		}
	}
	checkTree(t, dataDir)
	checkPacmanReads(t, d, "core", len(names))
	t.Logf("%d kills; %d complete responses during them, %d with wrong bytes", n, complete.Load(), wrong.Load())
}

// rawFetch is a GET that reports a cut body as an error.
func rawFetch(url string) (int, []byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// isDown is the error of a request to a daemon that was just killed.
func isDown(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "EOF") || strings.Contains(s, "broken pipe")
}

// TestCrashPublish kills mirrord at random moments while clients upload
// packages and the debounced builder rebuilds the db. After every restart:
// no temp file, the db names only files the tree holds with their sums,
// every upload that got 202 is in the db or pending, pacman reads the db.
// At the end every acknowledged package is in the db.
func TestCrashPublish(t *testing.T) {
	requireTool(t, "pacman")
	dataDir := t.TempDir()
	dir := t.TempDir()
	cfg := hostedConfig("50ms", "300ms")
	acked := map[string]string{} // package name -> job id
	var mu stdsync.Mutex
	n := rounds(3, 20)
	for round := range n {
		d := startAfterCrash(t, dataDir, cfg)
		checkTree(t, dataDir, "myrepo")
		mu.Lock()
		checkAcked(t, d, acked)
		mu.Unlock()
		checkPacmanReads(t, d, "myrepo", -1)
		if t.Failed() {
			t.FailNow()
		}
		var files []string
		for i := range 60 {
			files = append(files, buildPackage(t, dir, testPackage{Name: fmt.Sprintf("r%02dp%02d", round, i), Version: "1-1", Size: 2000}))
		}
		var wg stdsync.WaitGroup
		for c := range 4 {
			wg.Go(func() {
				for i := c; i < len(files); i += 4 {
					id, err := d.upload(filepath.Join(dir, files[i]))
					if err != nil {
						return // killed
					}
					mu.Lock()
					acked[strings.SplitN(files[i], "-1-1-", 2)[0]] = id
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(20+mrand.IntN(400)) * time.Millisecond) // a random moment, by design
		d.Kill()
		wg.Wait()
		checkTree(t, dataDir, "myrepo")
	}
	d := startAfterCrash(t, dataDir, cfg)
	for name, id := range acked {
		if status, msg := d.waitJob(id); status != "done" {
			t.Errorf("job %s of %s after %d kills = %s %s", id, name, n, status, msg)
		}
	}
	// An upload whose 202 the kill cut off may be in the db too: the
	// server had made it durable. Every acknowledged one must be.
	var inDB int
	eventually(t, 30*time.Second, "every acknowledged package in myrepo.db", func() bool {
		in := map[string]bool{}
		for _, p := range d.hostedDB() {
			in[p.Name] = true
		}
		inDB = len(in)
		for name := range acked {
			if !in[name] {
				return false
			}
		}
		return true
	})
	checkTree(t, dataDir, "myrepo")
	checkPacmanReads(t, d, "myrepo", inDB)
	t.Logf("%d kills; %d uploads acknowledged, all in the db (%d packages in it)", n, len(acked), inDB)
}

// TestCrashSync kills `mirrord sync` at a random package request of every
// round, each round after upstream published new packages, so that every
// kill lands in a sync with work to do. After each kill: the db names only
// files the tree holds whole, with their sums, and no temp file is in the
// tree. At the end a sync without faults makes the mirror upstream's copy.
func TestCrashSync(t *testing.T) {
	requireTool(t, "repo-add", "bsdtar")
	up, upDir := mirrorUpstream(t, []testPackage{{Name: "base", Version: "1-1", Size: 10_000}})
	up.SetFault(faultserver.AnyPath, faultserver.Fault{Rate: 400_000})
	cfg := mirrorConfigFile(t, up, "")
	dataDir := t.TempDir()
	treeDir := filepath.Join(dataDir, "tree/archlinux/core/os/x86_64")
	n := rounds(3, 15)
	kills := 0
	for round := range n {
		var files []string
		for i := range 6 {
			files = append(files, buildPackage(t, upDir, testPackage{Name: fmt.Sprintf("s%02dp%d", round, i), Version: "1-1", Size: 30_000 + i*5000}))
		}
		repoAdd(t, upDir, "core", files...)
		os.WriteFile(filepath.Join(up.Root(), "lastupdate"), []byte(fmt.Sprintf("%d\n", 1700000000+round+1)), 0o644)
		cmd := syncCmd(dataDir, cfg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		target := "/core/os/x86_64/" + files[mrand.IntN(len(files))]
		select {
		case <-up.Seen(target, 1):
			cmd.Process.Kill()
			<-exited
			kills++
		case err := <-exited:
			t.Logf("round %d: sync ended before the kill: %v", round, err)
		}
		checkConsistent(t, treeDir, treeFiles(t, upDir))
		checkTree(t, dataDir, "core")
		if t.Failed() {
			t.FailNow()
		}
	}
	up.ClearFaults()
	if out, err := syncCmd(dataDir, cfg).CombinedOutput(); err != nil {
		t.Fatalf("final mirrord sync: %v\n%s", err, out)
	}
	sameFiles(t, treeFiles(t, treeDir), treeFiles(t, upDir))
	checkTree(t, dataDir, "core")
	if left := tmpFiles(dataDir); len(left) != 0 {
		t.Errorf("tmp/ holds %v after the final sync", left)
	}
	t.Logf("%d kills in %d rounds of a sync with new packages; the final sync matches upstream", kills, n)
}
