package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/s3test"
)

// hostedClusterExtra is the config a cluster's hosted repo myrepo needs
// beside storageConfig: the publish tunables and the token (the same on
// every node, as any node may take a write).
func hostedClusterExtra() string {
	sum := sha256.Sum256([]byte(hostedToken))
	return fmt.Sprintf(`hosted: {workers: 4, debounce: 1s, max_delay: 10s, retention: 1h}
api:
  tokens:
    - {name: ci, sha256: %s, repos: [archlinux/myrepo]}`, hex.EncodeToString(sum[:]))
}

// publisherOf is the node that holds the lease "hosted", by its metrics:
// -1 while none does.
func publisherOf(c *testCluster, skip int) int {
	for i, d := range c.nodes {
		if i == skip {
			continue
		}
		_, m, _ := d.get("/metrics")
		if bytes.Contains(m, []byte(`mirrord_lease_held{lease="hosted"} 1`)) {
			return i
		}
	}
	return -1
}

// jobDone reports whether the job is done and in the served db, as node
// d answers (forwarding to the publisher).
func jobDone(d *daemon, id string) (bool, string) {
	code, body, _ := d.get("/api/v1/jobs/" + id)
	var j struct {
		Status, Error string
		PublishedAt   *time.Time `json:"published_at"`
	}
	if code != 200 || json.Unmarshal(body, &j) != nil {
		return false, fmt.Sprintf("%d %s", code, body)
	}
	return j.Status == "done" && j.PublishedAt != nil, j.Status + " " + j.Error
}

// TestClusterHosted: a hosted repo over three nodes and one bucket.
// Uploads spread over every node reach the one db, each exactly once, and
// a delete through any node leaves it;
// every node serves that db and every package (the others' misses filled
// from the bucket), and pacman installs through the balancer. The
// publisher is killed with kill -9 just after acknowledging more
// uploads: the others serve the databases they followed until one of
// them takes over, and no acknowledged upload is lost.
func TestClusterHosted(t *testing.T) {
	requireTool(t, "pacman", "bsdtar", "nginx")
	s3 := s3test.Start(t)
	up := newUpstream(t)
	c := startClusterRepos(t, up, s3, 3, "core: {mode: proxy}\nmyrepo: {mode: hosted}", hostedClusterExtra())
	var pub int
	eventually(t, 30*time.Second, "a node publishing the hosted repos", func() bool {
		pub = publisherOf(c, -1)
		return pub >= 0
	})

	dir := t.TempDir()
	sums := map[string]string{} // package name -> sha256 of its file
	build := func(name string) string {
		file := buildPackage(t, dir, testPackage{Name: name, Version: "1.0-1", Size: 4096})
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		sums[name] = hex.EncodeToString(sum[:])
		return filepath.Join(dir, file)
	}
	uploadAll := func(files []string, to func(i int) *daemon) []string {
		ids := make([]string, len(files))
		var wg sync.WaitGroup
		for i, f := range files {
			wg.Go(func() {
				id, err := to(i).upload(f)
				if err != nil {
					t.Errorf("upload %d to node %d: %v", i, i%len(c.nodes), err)
				}
				ids[i] = id
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return ids
	}

	// 31 concurrent uploads, spread over the three nodes.
	var files []string
	for i := range 31 {
		files = append(files, build(fmt.Sprintf("spread%02d", i)))
	}
	ids := uploadAll(files, func(i int) *daemon { return c.nodes[i%len(c.nodes)] })
	for i, id := range ids {
		d := c.nodes[(i+1)%len(c.nodes)] // asked of another node than took it
		eventually(t, 60*time.Second, "job "+id+" done and published", func() bool { ok, _ := jobDone(d, id); return ok })
	}
	checkDB := func(want int) {
		t.Helper()
		for i, d := range c.nodes {
			if d == nil {
				continue
			}
			pkgs := d.hostedDB()
			seen := map[string]int{}
			for _, p := range pkgs {
				seen[p.Name]++
				if p.SHA256Sum != sums[p.Name] {
					t.Errorf("node %d's db names %s with sha256 %s; want the upload's %s", i, p.Name, p.SHA256Sum, sums[p.Name])
				}
			}
			if len(pkgs) != want || len(seen) != want {
				t.Errorf("node %d's db lists %d packages (%d names); want %d, each once", i, len(pkgs), len(seen), want)
			}
		}
	}
	checkDB(31)
	// Each job was checked once, by whichever node claimed it first.
	var checks []string
	total := 0.0
	for _, d := range c.nodes {
		_, m, _ := d.get("/metrics")
		n := 0.0
		for _, l := range strings.Split(string(m), "\n") {
			if v, ok := strings.CutPrefix(l, `mirrord_publish_checks_total{result="done"} `); ok {
				n, _ = strconv.ParseFloat(v, 64)
			}
		}
		total += n
		checks = append(checks, fmt.Sprint(n))
	}
	t.Logf("jobs checked by node: %s (node %d publishes)", strings.Join(checks, ", "), pub)
	// The web page of the hosted repo, on a node that does not publish,
	// is the publisher's: with its recent jobs.
	if code, page, _ := c.nodes[(pub+1)%len(c.nodes)].get("/ui/repo/archlinux/myrepo"); code != 200 || !bytes.Contains(page, []byte("spread30")) || !bytes.Contains(page, []byte("job-done")) {
		t.Errorf("the repo's page on a node that does not publish = %d, without the recent job of spread30", code)
	}
	if code, page, _ := c.nodes[(pub+2)%len(c.nodes)].get("/"); code != 200 || !bytes.Contains(page, []byte("job-done")) {
		t.Errorf("the home page on a node that does not publish = %d, without the publisher's recent jobs", code)
	}
	if total != 31 {
		t.Errorf("the nodes checked %v jobs (%s); want 31, each once", total, strings.Join(checks, ", "))
	}
	// Every node serves every package, the right bytes: the publisher
	// from its tree, the others from the bucket.
	for i, d := range c.nodes {
		for _, name := range []string{"spread00", "spread01", "spread02"} {
			code, body, _ := d.get("/archlinux/myrepo/os/x86_64/" + name + "-1.0-1-x86_64.pkg.tar.zst")
			sum := sha256.Sum256(body)
			if code != 200 || hex.EncodeToString(sum[:]) != sums[name] {
				t.Errorf("node %d serves %s: %d, sha256 %x; want 200 and the upload", i, name, code, sum)
			}
		}
	}
	p := newPacmanRoot(t, c.LB+"/archlinux/$repo/os/$arch", "myrepo")
	p.mustRun("-Sy")
	p.mustRun("-S", "spread07", "spread08", "spread09")
	for _, name := range []string{"spread07", "spread08", "spread09"} {
		if !p.installed("usr/share/" + name + "/data") {
			t.Errorf("pacman -S through the balancer did not install %s", name)
		}
	}

	// A delete taken by a node that does not publish: every node's db
	// lacks the package at once.
	other := (pub + 1) % len(c.nodes)
	req, _ := http.NewRequest("DELETE", c.nodes[other].URL+"/api/v1/repos/archlinux/myrepo/x86_64/packages/spread30", nil)
	req.Header.Set("Authorization", "Bearer "+hostedToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("DELETE spread30 through node %d = %d; want 200", other, resp.StatusCode)
	}
	delete(sums, "spread30")
	eventually(t, 30*time.Second, "the db rebuilt without spread30", func() bool { return len(c.nodes[other].hostedDB()) == 30 })
	checkDB(30)

	// Every other node has followed the db into its own tree (the log
	// line of a follow names the db's sha256).
	_, db, _ := c.nodes[pub].get("/archlinux/myrepo/os/x86_64/myrepo.db")
	dbSum := sha256.Sum256(db)
	for i, d := range c.nodes {
		if i != pub {
			eventually(t, 30*time.Second, fmt.Sprintf("node %d following the db", i), func() bool {
				return strings.Contains(d.Log(), "db_sha256="+hex.EncodeToString(dbSum[:]))
			})
		}
	}

	// The publisher acknowledges more uploads and dies in the middle of
	// publishing them: once it committed one (its job done, the package
	// in the index) and before the debounced build put it in the served
	// db. The next holder of the lease finds the jobs, the index and the
	// bytes in the bucket.
	files = files[:0]
	for i := range 6 {
		files = append(files, build(fmt.Sprintf("late%d", i)))
	}
	ids = uploadAll(files, func(int) *daemon { return c.nodes[pub] })
	// (With hosted.debounce 1s the kill lands in that window unless the
	// machine stalls for a second; the checks below hold either way.)
	unpublished := 0
	committed := func() bool {
		done := 0
		unpublished = 0
		for _, id := range ids {
			if ok, state := jobDone(c.nodes[pub], id); strings.HasPrefix(state, "done") {
				done++
				if !ok {
					unpublished++
				}
			}
		}
		return done > 0
	}
	eventually(t, 30*time.Second, "a late job committed", committed)
	c.nodes[pub].Kill()
	t.Logf("killed the publisher with %d of the late jobs committed and not yet in the served db", unpublished)
	dead := pub
	c.nodes[dead] = nil
	// Until another node takes over, the others serve the databases they
	// followed, and answer the API's views of the repo from them.
	for i, d := range live(c.nodes) {
		if code, body, _ := d.get("/archlinux/myrepo/os/x86_64/myrepo.db"); code != 200 {
			t.Errorf("with the publisher dead, survivor %d serves the db: %d %.200s; want its followed copy", i, code, body)
		} else if n := len(d.hostedDB()); n < 30 {
			t.Errorf("with the publisher dead, survivor %d serves a db of %d packages; want its followed copy, at least the 30 it followed", i, n)
		}
		if code, body, _ := d.get("/api/v1/repos/archlinux/myrepo/x86_64/packages"); code != 200 || !bytes.Contains(body, []byte("spread29")) {
			t.Errorf("with the publisher dead, survivor %d lists the packages: %d %.200s", i, code, body)
		}
	}
	eventually(t, 60*time.Second, "another node publishing", func() bool {
		pub = publisherOf(&testCluster{nodes: live(c.nodes)}, -1)
		return pub >= 0
	})
	survivor := live(c.nodes)[0]
	for _, id := range ids {
		eventually(t, 60*time.Second, "acknowledged job "+id+" done after the publisher died", func() bool {
			ok, _ := jobDone(survivor, id)
			return ok
		})
	}
	checkDB(36)
	if t.Failed() {
		return
	}

	// The dead node, back with an empty disk, serves the same db and the
	// packages at once.
	back := startDaemon(t, "", c.configs[dead], "--listen", strings.TrimPrefix(c.urls[dead], "http://"))
	c.nodes[dead] = back
	eventually(t, 30*time.Second, "the restarted node serving the db", func() bool { return len(back.hostedDB()) == 36 })
	checkDB(36)
	code, body, _ := back.get("/archlinux/myrepo/os/x86_64/late0-1.0-1-x86_64.pkg.tar.zst")
	if sum := sha256.Sum256(body); code != 200 || hex.EncodeToString(sum[:]) != sums["late0"] {
		t.Errorf("the restarted node serves late0: %d, sha256 %x", code, sum)
	}
}

// live is nodes without the dead ones (nil).
func live(nodes []*daemon) []*daemon {
	var out []*daemon
	for _, d := range nodes {
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}
