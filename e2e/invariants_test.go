package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mirrord/mirrord/internal/alpm"
)

// The invariants that hold after any crash and restart. The
// crash tests check them after every kill -9; the sync and publish tests
// reuse them.

// fullReliability reports whether the long versions run
// (MIRRORD_RELIABILITY=full, set by scripts/reliability.sh).
func fullReliability() bool { return os.Getenv("MIRRORD_RELIABILITY") == "full" }

// rounds is n in the long version, short in CI and `go test`.
func rounds(short, full int) int {
	if fullReliability() {
		return full
	}
	return short
}

// checkTree checks a data dir, with the daemon stopped or running:
//   - no temp file of a fill or a write is in the tree;
//   - every database in the tree parses, and every package it names that
//     is in its folder has the size and sha256 the database names;
//   - for the repos in complete (by name, e.g. "core"), every package the
//     database names is in the folder: a mirror's or a hosted repo's db
//     never runs ahead of its files.
//
// It returns the parsed databases by folder (relative to the tree).
func checkTree(t *testing.T, dataDir string, complete ...string) map[string][]*alpm.Package {
	t.Helper()
	tree := filepath.Join(dataDir, "tree")
	dbs := map[string][]*alpm.Package{}
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if strings.HasPrefix(name, "fill-") || strings.HasPrefix(name, "write-") || strings.HasPrefix(name, "link-") {
			t.Errorf("temp file %s in the tree", p)
		}
		if d.IsDir() || !strings.HasSuffix(name, ".db") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("database %s unreadable: %v", p, err)
			return nil
		}
		db, err := alpm.ReadDB(bytes.NewReader(data))
		if err != nil {
			t.Errorf("database %s does not parse: %v", p, err)
			return nil
		}
		dir := filepath.Dir(p)
		rel, _ := filepath.Rel(tree, dir)
		dbs[rel] = db.Packages
		whole := slices.Contains(complete, strings.TrimSuffix(name, ".db"))
		for _, pkg := range db.Packages {
			b, err := os.ReadFile(filepath.Join(dir, pkg.Filename))
			if err != nil {
				if whole || !os.IsNotExist(err) {
					t.Errorf("%s names %s, which the tree lacks: %v", p, pkg.Filename, err)
				}
				continue
			}
			sum := sha256.Sum256(b)
			if int64(len(b)) != pkg.CSize || (pkg.SHA256Sum != "" && hex.EncodeToString(sum[:]) != pkg.SHA256Sum) {
				t.Errorf("%s in the tree: %d bytes sha256 %x; %s names %d bytes sha256 %s",
					pkg.Filename, len(b), sum, name, pkg.CSize, pkg.SHA256Sum)
			}
		}
		return nil
	})
	return dbs
}

// tmpFiles lists the store's tmp/: before a start, what a kill left.
func tmpFiles(dataDir string) []string {
	var names []string
	entries, _ := os.ReadDir(filepath.Join(dataDir, "tmp"))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// checkNoTemp checks, once the daemon has started, that none of the temp
// files a kill left (leftovers, from tmpFiles before the start) survived
// the startup. New ones may be there: the daemon is at work.
func checkNoTemp(t *testing.T, dataDir string, leftovers []string) {
	t.Helper()
	for _, name := range leftovers {
		if _, err := os.Lstat(filepath.Join(dataDir, "tmp", name)); err == nil {
			t.Errorf("tmp/%s, left by the kill, is still there after startup", name)
		}
	}
}

// startAfterCrash starts the daemon on dataDir and checks that the temp
// files the last kill left are gone.
func startAfterCrash(t *testing.T, dataDir, cfg string) *daemon {
	t.Helper()
	left := tmpFiles(dataDir)
	d := startDaemon(t, dataDir, cfg)
	checkNoTemp(t, dataDir, left)
	return d
}

// checkPacmanReads runs the real pacman -Sy against d for repo and checks
// that it lists want packages (-1: any number).
func checkPacmanReads(t *testing.T, d *daemon, repo string, want int) {
	t.Helper()
	requireTool(t, "pacman")
	p := newPacmanRoot(t, d.URL+"/archlinux/$repo/os/$arch", repo)
	if out, err := p.run("-Sy"); err != nil {
		t.Errorf("pacman -Sy of %s: %v\n%s", repo, err, out)
		return
	}
	out, err := p.run("-Sl", repo)
	if err != nil {
		t.Errorf("pacman -Sl %s: %v\n%s", repo, err, out)
		return
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, repo+" ") {
			n++
		}
	}
	if want >= 0 && n != want {
		t.Errorf("pacman -Sl %s lists %d packages, want %d", repo, n, want)
	}
}

// jobState reads a publish job's status.
func (d *daemon) jobState(id string) string {
	d.t.Helper()
	code, body, _ := d.get("/api/v1/jobs/" + id)
	var j struct{ Status string }
	if code != 200 || json.Unmarshal(body, &j) != nil {
		return "missing (" + strconv.Itoa(code) + ")"
	}
	return j.Status
}

// checkAcked checks that every upload that got 202 (name -> job id) is in
// the repo's db or its job is still pending: queued or running. Nothing
// acknowledged is lost, nor failed by the crash.
func checkAcked(t *testing.T, d *daemon, acked map[string]string) {
	t.Helper()
	inDB := map[string]bool{}
	for _, p := range d.hostedDB() {
		inDB[p.Name] = true
	}
	for name, id := range acked {
		if inDB[name] {
			continue
		}
		if s := d.jobState(id); s != "queued" && s != "running" && s != "done" {
			t.Errorf("upload %s (job %s) acknowledged with 202 is neither in the db nor pending: %s", name, id, s)
		}
	}
}
