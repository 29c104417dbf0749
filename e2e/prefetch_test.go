package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// prefetchRun is a run in the "prefetch" of /api/v1/status.
type prefetchRun struct {
	Repo, Arch                      string
	Started, Finished               time.Time
	Files, Bytes, Skipped, Failures int64
}

// prefetchRun returns the last prefetch run of repo's arch that started
// at or after since, if it has finished.
func (d *daemon) prefetchRun(repo, arch string, since time.Time) (prefetchRun, bool) {
	d.t.Helper()
	code, body, _ := d.get("/api/v1/status")
	var st struct{ Prefetch []prefetchRun }
	if code != 200 || json.Unmarshal(body, &st) != nil {
		d.t.Fatalf("/api/v1/status = %d %s", code, body)
	}
	for _, r := range st.Prefetch {
		if r.Repo == repo && r.Arch == arch && !r.Started.Before(since) && !r.Finished.IsZero() {
			return r, true
		}
	}
	return prefetchRun{}, false
}

// A LAN installs through the proxy; upstream publishes new versions; the
// first machine's pacman -Sy brings the new db, and the prefetch fetches
// the new versions of what was installed (nothing else). The second
// machine's pacman -Syu then costs no upstream package request at all.
func TestPrefetchThenPacman(t *testing.T) {
	requireTool(t, "pacman", "repo-add", "bsdtar")
	up := newUpstream(t)
	repoDir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(repoDir, 0o755)
	var old []string
	for _, p := range []testPackage{
		{Name: "hello", Version: "1.0-1", Size: 200_000, Depends: []string{"libgreet"}},
		{Name: "libgreet", Version: "1.0-1", Size: 50_000},
		{Name: "unused", Version: "1.0-1", Size: 10_000},
	} {
		old = append(old, buildPackage(t, repoDir, p))
	}
	repoAdd(t, repoDir, "core", old...)
	// Every pacman -Sy revalidates the db (the default, 60s, would make
	// the test wait for it).
	d := startDaemon(t, "", proxyConfig(up, "cache: {db_max_age: 1ns}\n"))
	server := d.URL + "/archlinux/$repo/os/$arch"
	first, second := newPacmanRoot(t, server, "core"), newPacmanRoot(t, server, "core")
	for _, p := range []*pacmanRoot{first, second} {
		p.mustRun("-Sy")
		p.mustRun("-S", "hello")
	}

	dbFile := filepath.Join(repoDir, "core.db.tar.gz")
	info, err := os.Stat(dbFile)
	if err != nil {
		t.Fatal(err)
	}
	var next []string
	for _, p := range []testPackage{
		{Name: "hello", Version: "1.1-1", Size: 210_000, Depends: []string{"libgreet"}},
		{Name: "libgreet", Version: "1.1-1", Size: 60_000},
		{Name: "unused", Version: "1.1-1", Size: 10_000},
	} {
		next = append(next, buildPackage(t, repoDir, p))
	}
	repoAdd(t, repoDir, "core", next...)
	// Newer to the second than the db mirrord has, so that its
	// If-Modified-Since revalidation gets the new one.
	mod := info.ModTime().Add(2 * time.Second)
	if err := os.Chtimes(dbFile, mod, mod); err != nil {
		t.Fatal(err)
	}

	since := time.Now()
	first.mustRun("-Sy") // mirrord revalidates core.db: the new one
	var run prefetchRun
	eventually(t, 60*time.Second, "a prefetch run over the new db", func() bool {
		var ok bool
		run, ok = d.prefetchRun("archlinux/core", "x86_64", since)
		return ok
	})
	if run.Files != 2 || run.Skipped != 0 || run.Failures != 0 {
		t.Errorf("prefetch run = %+v; want 2 files (hello and libgreet 1.1-1)", run)
	}
	if n := up.Requests("/core/os/x86_64/" + next[2]); n != 0 {
		t.Errorf("%s, which nobody installed, was fetched %d times", next[2], n)
	}

	up.Reset()
	second.mustRun("-Syu")
	for _, entry := range []string{"hello-1.1-1", "libgreet-1.1-1"} {
		if _, err := os.Stat(filepath.Join(second.dir, "db", "local", entry)); err != nil {
			t.Errorf("after -Syu on the second machine %s is not installed: %v", entry, err)
		}
	}
	var pkgRequests []string
	for _, e := range up.Log() {
		if strings.Contains(e.Path, ".pkg.tar") {
			pkgRequests = append(pkgRequests, e.Method+" "+e.Path)
		}
	}
	if len(pkgRequests) != 0 {
		t.Errorf("pacman -Syu after the prefetch made upstream package requests: %v", pkgRequests)
	}
	if up.Total() == 0 {
		t.Error("no upstream request at all during -Syu: the db was not revalidated, so the test proves nothing")
	}
	_, metrics, _ := d.get("/metrics")
	if !bytes.Contains(metrics, []byte(`mirrord_prefetch_files_total{repo="archlinux/core"} 2`)) {
		t.Errorf("/metrics lacks mirrord_prefetch_files_total 2 for archlinux/core")
	}
}
