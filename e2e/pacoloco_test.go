package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mirrord/mirrord/internal/faultserver"
)

// readmeBlock returns the n-th ```yaml block (from 0) of README.md's
// section headed heading.
func readmeBlock(t *testing.T, heading string, n int) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("README has no section %q", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) <= n {
		t.Fatalf("README section %q has %d yaml blocks, want %d", heading, len(blocks), n+1)
	}
	return blocks[n][1]
}

// The README's translation of a pacoloco config runs as a pacoloco user
// expects: pacman installs through it; the mirrors named in urls and in
// the mirrorlist are used, through the HTTP proxy and with the user
// agent given; each request gets an access log line, the first download
// of a package a miss, the next a hit.
func TestPacolocoConfig(t *testing.T) {
	requireTool(t, "pacman", "repo-add", "bsdtar")
	up := newUpstream(t)
	repoDir := filepath.Join(up.Root(), "archlinux/core/os/x86_64")
	os.MkdirAll(repoDir, 0o755)
	pkg := buildPackage(t, repoDir, testPackage{Name: "hello", Version: "1.0-1", Size: 100_000})
	repoAdd(t, repoDir, "core", pkg)

	proxy := faultserver.NewProxy(t)
	for _, host := range []string{"mirror.lty.me", "mirrors.kernel.org", "reflector.example"} {
		proxy.Route(host, up.Addr()) // the names stay as the README writes them
	}
	mirrorlist := filepath.Join(t.TempDir(), "mirrorlist")
	os.WriteFile(mirrorlist, []byte("## reflector's\nServer = http://reflector.example/archlinux/$repo/os/$arch\n"), 0o644)

	cfg := readmeBlock(t, "Coming from pacoloco", 1)
	for old, new := range map[string]string{"http://proxy.lan:3128": proxy.URL(), "/etc/pacman.d/mirrorlist": mirrorlist} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("the README's mirrord.yaml has no %q", old)
		}
		cfg = strings.ReplaceAll(cfg, old, new)
	}
	d := startDaemon(t, "", cfg) // listen and data_dir: the harness's flags
	server := d.URL + "/archlinux/$repo/os/$arch"
	for i := range 2 {
		p := newPacmanRoot(t, server, "core")
		p.mustRun("-Sy")
		p.mustRun("-S", "hello")
		if !p.installed("usr/share/hello/data") {
			t.Fatalf("round %d: hello not installed", i)
		}
	}
	if n := up.Requests("/archlinux/core/os/x86_64/" + pkg); n != 1 {
		t.Errorf("upstream requests for the package = %d, want 1", n)
	}
	forwarded := proxy.Log()
	if len(forwarded) == 0 {
		t.Fatal("nothing went through upstream.proxy")
	}
	for i, ua := range proxy.UserAgents() {
		if ua != "Pacoloco/1.2" {
			t.Errorf("request %s had User-Agent %q, want upstream.user_agent's", forwarded[i], ua)
		}
	}

	if err := d.Stop(); err != nil { // Stop flushes the buffered lines
		t.Fatal(err)
	}
	path := "path=/archlinux/core/os/x86_64/" + pkg
	var results []string
	for _, line := range strings.Split(d.Log(), "\n") {
		if strings.Contains(line, "msg=request") && strings.Contains(line, path+" ") {
			if !strings.Contains(line, "status=200") || !strings.Contains(line, `user_agent="pacman/`) {
				t.Errorf("access line %q: want status 200 and pacman's user agent", line)
			}
			_, r, _ := strings.Cut(line, " result=")
			r, _, _ = strings.Cut(r, " ")
			results = append(results, r)
		}
	}
	if strings.Join(results, ",") != "miss,hit" {
		t.Errorf("access log results for the package = %v, want [miss hit]", results)
	}
}

// log.access false: no access lines.
func TestAccessLogOff(t *testing.T) {
	up := newUpstream(t)
	os.MkdirAll(filepath.Join(up.Root(), "core/os/x86_64"), 0o755)
	os.WriteFile(filepath.Join(up.Root(), "core/os/x86_64/a-1-1-any.pkg.tar.zst"), []byte("a"), 0o644)
	for _, on := range []bool{true, false} {
		extra := ""
		if !on {
			extra = "log: {access: false}\n"
		}
		d := startDaemon(t, "", proxyConfig(up, extra))
		for range 2 { // a miss, then a hit on the fast path
			if code, _, _ := d.get("/archlinux/core/os/x86_64/a-1-1-any.pkg.tar.zst"); code != 200 {
				t.Fatalf("GET = %d", code)
			}
		}
		if err := d.Stop(); err != nil { // Stop flushes the buffered lines
			t.Fatal(err)
		}
		if n := strings.Count(d.Log(), "msg=request"); n != map[bool]int{true: 2, false: 0}[on] {
			t.Errorf("log.access %v: %d access lines\n%s", on, n, d.Log())
		}
	}
}
