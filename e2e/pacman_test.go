package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrord/mirrord/internal/alpm"
)

// testPackage describes a package to build for a test repo.
type testPackage struct {
	Name, Version, Arch string
	Depends             []string
	Size                int // payload bytes
}

// buildPackage writes a .pkg.tar.zst into dir the way makepkg would lay it
// out (makepkg refuses to run as root) and returns its file name.
func buildPackage(t *testing.T, dir string, p testPackage) string {
	t.Helper()
	if p.Arch == "" {
		p.Arch = "x86_64"
	}
	payload := bytes.Repeat([]byte(p.Name+" "), p.Size/(len(p.Name)+1)+1)[:p.Size]
	pi := &alpm.PKGINFO{Package: alpm.Package{
		Name: p.Name, Base: p.Name, Version: p.Version, Desc: "test package " + p.Name,
		URL: "https://example.org/" + p.Name, BuildDate: 1795824270, Packager: "mirrord tests <test@example.org>",
		ISize: int64(p.Size), Arch: p.Arch, Licenses: []string{"MIT"}, Depends: p.Depends,
	}}
	name := fmt.Sprintf("%s-%s-%s.pkg.tar.zst", p.Name, p.Version, p.Arch)
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := []alpm.PackageFile{{Name: "usr/share/" + p.Name + "/data", Body: payload}}
	if err := alpm.WritePackage(f, pi, files, alpm.Zstd); err != nil {
		t.Fatal(err)
	}
	return name
}

// repoAdd builds {dir}/{repo}.db with the real repo-add.
func repoAdd(t *testing.T, dir, repo string, files ...string) {
	t.Helper()
	args := []string{"-q", filepath.Join(dir, repo+".db.tar.gz")}
	for _, f := range files {
		args = append(args, filepath.Join(dir, f))
	}
	if out, err := exec.Command("repo-add", args...).CombinedOutput(); err != nil {
		t.Fatalf("repo-add: %v\n%s", err, out)
	}
}

// pacmanRoot is a throwaway pacman installation root.
type pacmanRoot struct {
	t    *testing.T
	dir  string
	conf string
}

// newPacmanRoot writes a pacman.conf whose repos all point at server
// (a URL template with $repo and $arch).
func newPacmanRoot(t *testing.T, server string, repos ...string) *pacmanRoot {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"root", "db", "cache", "gnupg", "hooks"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[options]\nRootDir = %[1]s/root\nDBPath = %[1]s/db/\nCacheDir = %[1]s/cache/\nLogFile = %[1]s/pacman.log\n"+
		"GPGDir = %[1]s/gnupg/\nHookDir = %[1]s/hooks/\nArchitecture = x86_64\nSigLevel = Never\nParallelDownloads = 5\n", dir)
	for _, r := range repos {
		fmt.Fprintf(&b, "[%s]\nServer = %s\n", r, server)
	}
	conf := filepath.Join(dir, "pacman.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return &pacmanRoot{t: t, dir: dir, conf: conf}
}

// run runs pacman with the root's config; root is needed for -Sy and -S
// (fakeroot when the tests do not run as root).
func (p *pacmanRoot) run(args ...string) (string, error) {
	args = append([]string{"--config", p.conf, "--noconfirm", "--noprogressbar"}, args...)
	name := "pacman"
	if os.Geteuid() != 0 {
		args = append([]string{"pacman"}, args...)
		name = "fakeroot"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *pacmanRoot) mustRun(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("pacman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (p *pacmanRoot) installed(file string) bool {
	_, err := os.Stat(filepath.Join(p.dir, "root", file))
	return err == nil
}

func TestPacmanThroughProxy(t *testing.T) {
	requireTool(t, "pacman", "repo-add", "bsdtar")
	up := newUpstream(t)
	repoDir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(repoDir, 0o755)
	var files []string
	for _, p := range []testPackage{
		{Name: "hello", Version: "1.0-1", Size: 200_000, Depends: []string{"libgreet"}},
		{Name: "libgreet", Version: "2:0.5-3", Size: 50_000},
		{Name: "big", Version: "3.1-1", Size: 3 << 20},
		{Name: "noarch", Version: "1-1", Arch: "any", Size: 1000},
	} {
		files = append(files, buildPackage(t, repoDir, p))
	}
	repoAdd(t, repoDir, "core", files...)

	d := startDaemon(t, "", proxyConfig(up, "cache: {db_max_age: 1ns}\n"))
	server := d.URL + "/archlinux/$repo/os/$arch"

	p := newPacmanRoot(t, server, "core")
	p.mustRun("-Sy")
	p.mustRun("-S", "hello", "big", "noarch")
	for _, f := range []string{"usr/share/hello/data", "usr/share/libgreet/data", "usr/share/big/data", "usr/share/noarch/data"} {
		if !p.installed(f) {
			t.Errorf("%s not installed", f)
		}
	}
	for _, f := range files {
		if n := up.Requests("/core/os/x86_64/" + f); n != 1 {
			t.Errorf("upstream requests for %s = %d, want 1", f, n)
		}
	}
	// -Si and -Ss read the db mirrord served.
	if out := p.mustRun("-Si", "libgreet"); !strings.Contains(out, "2:0.5-3") {
		t.Errorf("pacman -Si libgreet:\n%s", out)
	}

	// Upstream gone: a second machine still syncs (stale db) and installs
	// (cached packages).
	up.Close()
	p2 := newPacmanRoot(t, server, "core")
	p2.mustRun("-Sy")
	p2.mustRun("-S", "hello")
	if !p2.installed("usr/share/hello/data") {
		t.Error("hello not installed with the upstream down")
	}
	_, metrics, _ := d.get("/metrics")
	if !bytes.Contains(metrics, []byte(`mirrord_requests_total{repo="archlinux/core",result="stale"}`)) {
		t.Error("no stale count in /metrics")
	}
	if bytes.Contains(metrics, []byte(`mirrord_requests_total{repo="archlinux/core",result="stale"} 0`)) {
		t.Error("stale count is 0 after serving dbs with the upstream down")
	}
}
