package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/logtest"
)

// TestLogLines runs the daemon with log.format json at debug through a
// sync, proxy misses, a 404, a publish and a delete, then stops it. Every
// line is JSON with each key once; one line at start lists every repo
// with its mode and upstream count; badger's lines are few and at debug.
func TestLogLines(t *testing.T) {
	requireTool(t, "repo-add", "bsdtar")
	up, _ := mirrorUpstream(t, []testPackage{{Name: "base", Version: "1-1", Size: 128}})
	extra := filepath.Join(up.Root(), "extra/os/x86_64")
	os.MkdirAll(extra, 0o755)
	repoAdd(t, extra, "extra", buildPackage(t, extra, testPackage{Name: "tool", Version: "2-1", Size: 128}))
	cfg := strings.Replace(hostedConfig("50ms", "1s"), "      myrepo: {mode: hosted}\n", fmt.Sprintf(
		"      myrepo: {mode: hosted}\n      core: {mode: mirror}\n      extra: {mode: proxy}\n    upstreams: [\"http://%s/$repo/os/$arch\"]\n", up.Addr()), 1)
	d := startDaemon(t, "", "log: {format: json}\nupstream: {retries: 0}\n"+cfg)

	eventually(t, 30*time.Second, "the sync of core", func() bool { return strings.Contains(d.Log(), `"msg":"sync done"`) })
	if code, _, _ := d.get("/archlinux/extra/os/x86_64/tool-2-1-x86_64.pkg.tar.zst"); code != 200 {
		t.Errorf("proxy miss = %d", code)
	}
	if code, _, _ := d.get("/archlinux/extra/os/x86_64/absent-1-1-x86_64.pkg.tar.zst"); code != 404 {
		t.Errorf("absent file = %d, want 404", code)
	}
	dir := t.TempDir()
	file := buildPackage(t, dir, testPackage{Name: "logged", Version: "1-1", Size: 64})
	for _, args := range [][]string{
		{"publish", "--url", d.URL, "--token", hostedToken, "--wait", "archlinux/myrepo", filepath.Join(dir, file)},
		{"delete", "--url", d.URL, "--token", hostedToken, "archlinux/myrepo", "logged"},
	} {
		if out, err := exec.Command(binary, args...).CombinedOutput(); err != nil {
			t.Fatalf("mirrord %s: %v\n%s", args[0], err, out)
		}
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	lines, badger, repoLines := 0, 0, 0
	components := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(d.Log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		keys, err := logtest.JSONKeys(sc.Bytes())
		if err != nil && err != io.EOF {
			t.Errorf("not a JSON line: %s (%v)", sc.Bytes(), err)
			continue
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("key %q twice in %s", k, sc.Bytes())
			}
			seen[k] = true
		}
		var l struct {
			Level, Msg, Component, Subsystem string
			Repos                            map[string]string
		}
		json.Unmarshal(sc.Bytes(), &l)
		components[l.Component]++
		if l.Subsystem == "badger" {
			badger++
			if l.Level != "DEBUG" {
				t.Errorf("badger at %s: %s", l.Level, sc.Bytes())
			}
		}
		if l.Msg == "repos" {
			repoLines++
			want := map[string]string{"archlinux/core": "mirror, 1 upstream", "archlinux/extra": "proxy, 1 upstream", "archlinux/myrepo": "hosted"}
			if fmt.Sprint(l.Repos) != fmt.Sprint(want) {
				t.Errorf("repos line lists %v, want %v", l.Repos, want)
			}
		}
	}
	if repoLines != 1 {
		t.Errorf("%d lines listing the repos, want 1", repoLines)
	}
	if badger > lines/4 {
		t.Errorf("%d of %d lines are badger's", badger, lines)
	}
	t.Logf("%d lines at debug; by component %v; badger %d", lines, components, badger)
}
