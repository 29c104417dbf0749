package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/alpm"
)

const hostedToken = "e2e-publish-token"

// hostedConfig is a distro with one hosted repo "myrepo" (pacman reserves
// the name "local" for its own database) and a token for it.
func hostedConfig(debounce, maxDelay string) string {
	sum := sha256.Sum256([]byte(hostedToken))
	return fmt.Sprintf(`
hosted: {workers: 4, debounce: %s, max_delay: %s, retention: 1h}
api:
  tokens:
    - {name: ci, sha256: %s, repos: [archlinux/myrepo]}
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    repos:
      myrepo: {mode: hosted}
`, debounce, maxDelay, hex.EncodeToString(sum[:]))
}

// upload POSTs a package file raw and returns the job id.
func (d *daemon) upload(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	req, _ := http.NewRequest("POST", d.URL+"/api/v1/repos/archlinux/myrepo/packages?filename="+filepath.Base(path), f)
	req.Header.Set("Authorization", "Bearer "+hostedToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Job, Error string }
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("upload %s = %d %s", filepath.Base(path), resp.StatusCode, out.Error)
	}
	return out.Job, nil
}

// waitJob long-polls a job until it is settled (failed, or done and in
// the served db) and returns its status.
func (d *daemon) waitJob(id string) (status, msg string) {
	d.t.Helper()
	for {
		code, body, _ := d.get("/api/v1/jobs/" + id + "?wait=30s")
		var j struct{ Status, Error string }
		if code != 200 || json.Unmarshal(body, &j) != nil {
			d.t.Fatalf("job %s = %d %s", id, code, body)
		}
		if j.Status == "done" || j.Status == "failed" {
			return j.Status, j.Error
		}
	}
}

// eventually polls cond every 50ms for up to timeout: a db rebuild inside
// another process has no signal to wait on.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hostedDB fetches and parses myrepo.db over HTTP, as pacman would.
func (d *daemon) hostedDB() []*alpm.Package {
	d.t.Helper()
	code, body, _ := d.get("/archlinux/myrepo/os/x86_64/myrepo.db")
	if code != 200 {
		return nil
	}
	db, err := alpm.ReadDB(bytes.NewReader(body))
	if err != nil {
		d.t.Fatalf("myrepo.db: %v", err)
	}
	return db.Packages
}

var rebuildsRE = regexp.MustCompile(`(?m)^mirrord_db_rebuilds_total\{repo="archlinux/myrepo"\} (\d+)`)

func TestPublishThenPacman(t *testing.T) {
	requireTool(t, "pacman")
	d := startDaemon(t, "", hostedConfig("300ms", "10s"))
	dir := t.TempDir()
	const n, clients = 300, 16
	var files []string
	for i := range n {
		arch := "x86_64"
		if i%10 == 0 {
			arch = "any"
		}
		files = append(files, buildPackage(t, dir, testPackage{Name: fmt.Sprintf("pub%03d", i), Version: "1.0-1", Arch: arch, Size: 64}))
	}
	start := time.Now()
	jobs := make([]string, n)
	var wg stdsync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := c; i < n; i += clients {
				id, err := d.upload(filepath.Join(dir, files[i]))
				if err != nil {
					t.Error(err)
					return
				}
				jobs[i] = id
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, id := range jobs {
		if status, msg := d.waitJob(id); status != "done" {
			t.Errorf("job %s = %s %s", id, status, msg)
		}
	}
	// ?wait answered done: the served db lists the package.
	if got := len(d.hostedDB()); got != n {
		t.Fatalf("myrepo.db lists %d packages once every job is done, want %d", got, n)
	}
	t.Logf("%d packages from %d clients published and in the db after %v", n, clients, time.Since(start).Round(time.Millisecond))

	seen := map[string]int{}
	for _, p := range d.hostedDB() {
		seen[p.Name]++
		if code, body, _ := d.get("/archlinux/myrepo/os/x86_64/" + p.Filename); code != 200 || int64(len(body)) != p.CSize {
			t.Errorf("GET %s = %d, %d bytes, want 200 and %d", p.Filename, code, len(body), p.CSize)
		}
	}
	for i := range n {
		if name := fmt.Sprintf("pub%03d", i); seen[name] != 1 {
			t.Errorf("%s is %d times in the db, want once", name, seen[name])
		}
	}
	_, metrics, _ := d.get("/metrics")
	if m := rebuildsRE.FindSubmatch(metrics); m == nil {
		t.Error("no mirrord_db_rebuilds_total for archlinux/myrepo")
	} else {
		t.Logf("db rebuilds for %d uploads: %s", n, m[1])
	}

	p := newPacmanRoot(t, d.URL+"/archlinux/$repo/os/$arch", "myrepo")
	p.mustRun("-Sy")
	p.mustRun("-S", "pub001", "pub010", "pub299")
	for _, f := range []string{"usr/share/pub001/data", "usr/share/pub010/data", "usr/share/pub299/data"} {
		if !p.installed(f) {
			t.Errorf("%s not installed", f)
		}
	}

	// mirrord publish --wait: token from the environment; a newer version
	// is published, an older one refused with a non-zero exit.
	newer := buildPackage(t, dir, testPackage{Name: "pub001", Version: "1.1-1", Size: 64})
	older := buildPackage(t, dir, testPackage{Name: "pub002", Version: "0.9-1", Size: 64})
	cmd := exec.Command(binary, "publish", "--url", d.URL, "--wait", "archlinux/myrepo", filepath.Join(dir, newer))
	cmd.Env = append(os.Environ(), "MIRRORD_TOKEN="+hostedToken)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "published "+newer) {
		t.Errorf("mirrord publish %s: %v\n%s", newer, err, out)
	}
	cmd = exec.Command(binary, "publish", "--url", d.URL, "--token", hostedToken, "--wait", "archlinux/myrepo", filepath.Join(dir, older))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not newer") {
		t.Errorf("mirrord publish of an older version: err=%v, want a failure saying not newer\n%s", err, out)
	}
	cmd = exec.Command(binary, "publish", "--url", d.URL, "archlinux/myrepo", filepath.Join(dir, older))
	cmd.Env = append(os.Environ(), "MIRRORD_TOKEN=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "needs a token") {
		t.Errorf("mirrord publish without a token: err=%v, want a failure saying a token is needed\n%s", err, out)
	}
	// publish --wait returned: the served db lists the new version.
	for _, p := range d.hostedDB() {
		if p.Name == "pub001" && p.Version != "1.1-1" {
			t.Errorf("myrepo.db after publish --wait lists pub001 %s, want 1.1-1", p.Version)
		}
	}
	p.mustRun("-Sy")
	p.mustRun("-S", "pub001")
	if _, err := os.Stat(filepath.Join(p.dir, "db/local/pub001-1.1-1")); err != nil {
		t.Errorf("pub001 1.1-1 not installed: %v", err)
	}
}

// TestPublishSurvivesKill9: packages acknowledged with 202 are in the db
// after kill -9 and a restart, whether the kill caught their job queued or
// done but not yet in a rebuilt db.
func TestPublishSurvivesKill9(t *testing.T) {
	dataDir := t.TempDir()
	// A debounce of an hour: nothing is rebuilt before the kill.
	d := startDaemon(t, dataDir, hostedConfig("1h", "1h"))
	dir := t.TempDir()
	const n = 40
	var jobs []string
	for i := range n {
		f := buildPackage(t, dir, testPackage{Name: fmt.Sprintf("k%02d", i), Version: "1-1", Size: 64})
		id, err := d.upload(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, id)
	}

	if db := d.hostedDB(); len(db) != 0 {
		t.Fatalf("db has %d packages before the kill, want none (debounce 1h)", len(db))
	}
	d.Kill()

	d = startDaemon(t, dataDir, hostedConfig("100ms", "5s"))
	for _, id := range jobs {
		if status, msg := d.waitJob(id); status != "done" {
			t.Errorf("job %s after restart = %s %s", id, status, msg)
		}
	}
	if got := len(d.hostedDB()); got != n {
		t.Errorf("myrepo.db after restart lists %d packages once every job is done, want %d", got, n)
	}
	if left, _ := os.ReadDir(filepath.Join(dataDir, "staging")); len(left) != 0 {
		t.Errorf("staging holds %d files after every job is done", len(left))
	}
	if m := regexp.MustCompile(`resuming publish jobs jobs=(\d+)`).FindStringSubmatch(d.Log()); m != nil {
		t.Logf("%s of %d jobs were still pending at the kill", m[1], n)
	}
	_, body, _ := d.get("/api/v1/repos/archlinux/myrepo/x86_64/packages?per_page=500")
	var list struct{ Total int }
	json.Unmarshal(body, &list)
	if list.Total != n {
		t.Errorf("API lists %d packages, want %d", list.Total, n)
	}
}

// TestPublishWaitServes: `mirrord publish --wait` returns only once the db
// mirrord serves lists the new version, however long hosted.debounce is,
// so `publish --wait && pacman -Syu` installs it; --timeout shorter than
// the debounce fails.
func TestPublishWaitServes(t *testing.T) {
	requireTool(t, "pacman")
	const debounce = 2 * time.Second
	d := startDaemon(t, "", hostedConfig(debounce.String(), "30s"))
	dir := t.TempDir()
	publish := func(file string, extra ...string) (string, error) {
		args := append([]string{"publish", "--url", d.URL, "--token", hostedToken, "--wait"}, extra...)
		out, err := exec.Command(binary, append(args, "archlinux/myrepo", filepath.Join(dir, file))...).CombinedOutput()
		return string(out), err
	}
	served := func() string {
		for _, p := range d.hostedDB() {
			if p.Name == "waiter" {
				return p.Version
			}
		}
		return ""
	}
	p := newPacmanRoot(t, d.URL+"/archlinux/$repo/os/$arch", "myrepo")
	for _, version := range []string{"1.0-1", "1.1-1"} {
		file := buildPackage(t, dir, testPackage{Name: "waiter", Version: version, Size: 64})
		start := time.Now()
		if out, err := publish(file); err != nil || !strings.Contains(out, "published "+file) {
			t.Fatalf("mirrord publish --wait %s: %v\n%s", file, err, out)
		}
		took := time.Since(start)
		if got := served(); got != version {
			t.Fatalf("served myrepo.db right after publish --wait of %s (%v) lists waiter %q, want %s", file, took, got, version)
		}
		t.Logf("publish --wait of %s took %v (debounce %v)", version, took.Round(time.Millisecond), debounce)
		p.mustRun("-Syu", "waiter")
		if _, err := os.Stat(filepath.Join(p.dir, "db/local/waiter-"+version)); err != nil {
			t.Errorf("pacman -Syu right after publish --wait: waiter %s not installed: %v", version, err)
		}
	}

	// A timeout that comes before the rebuild: non-zero, and it says why.
	file := buildPackage(t, dir, testPackage{Name: "waiter", Version: "1.2-1", Size: 64})
	out, err := publish(file, "--timeout", "500ms")
	if err == nil || !strings.Contains(out, "not yet in the served database") {
		t.Errorf("publish --wait --timeout 500ms (debounce %v): err=%v, want a failure saying the db is not served yet\n%s", debounce, err, out)
	}
	if got := served(); got != "1.1-1" {
		t.Errorf("served db lists waiter %q within the debounce, want still 1.1-1", got)
	}
}
