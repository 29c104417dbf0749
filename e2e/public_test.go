package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// publicDir is a folder that other users can reach (t.TempDir's are
// private to root), removed at the end of the test.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mirrord-public-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startTool runs a server process until the test ends. It runs in a
// process group of its own, killed whole at the end: nginx's workers
// outlive a killed master and would hold the output pipe open.
func startTool(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
}

// TestTreeServedByOthers: the tree that every mode writes (a mirror sync,
// a proxy fill, a hosted publish) is served byte for byte by nginx and by
// an rsync daemon running as nobody, with the shipped contrib configs;
// a downstream rsync reproduces it, and a second one moves nothing.
func TestTreeServedByOthers(t *testing.T) {
	requireTool(t, "nginx", "rsync", "repo-add")
	if os.Geteuid() != 0 {
		t.Skip("nginx and rsyncd drop to nobody only when started as root")
	}
	var pkgs []testPackage
	for i := range 6 {
		pkgs = append(pkgs, testPackage{Name: fmt.Sprintf("pub%d", i), Version: "1.0-1", Size: 2000 + i*1000})
	}
	up, _ := mirrorUpstream(t, pkgs)
	data := filepath.Join(publicDir(t), "data")
	cfg := fmt.Sprintf(`
upstream: {retries: 0}
hosted: {debounce: 100ms, max_delay: 2s}
api:
  tokens:
    - {name: ci, sha256: %s, repos: [archlinux/myrepo]}
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%[2]s/$repo/os/$arch"]
    repos:
      core: {mode: mirror}
      myrepo: {mode: hosted}
  proxied:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%[2]s/$repo/os/$arch"]
    repos:
      core: {mode: proxy}
`, tokenHash(hostedToken), up.Addr())
	cfgFile := filepath.Join(t.TempDir(), "mirrord.yaml")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	if out, err := syncCmd(data, cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("mirrord sync: %v\n%s", err, out)
	}
	d := startDaemon(t, data, cfg)
	if code, _, _ := d.get("/proxied/core/os/x86_64/pub1-1.0-1-x86_64.pkg.tar.zst"); code != 200 {
		t.Fatalf("proxy fill = %d", code)
	}
	dir := t.TempDir()
	id, err := d.upload(filepath.Join(dir, buildPackage(t, dir, testPackage{Name: "hosted", Version: "1-1", Size: 500})))
	if err != nil {
		t.Fatal(err)
	}
	if status, msg := d.waitJob(id); status != "done" {
		t.Fatalf("publish: %s %s", status, msg)
	}
	eventually(t, 20*time.Second, "hosted in myrepo.db", func() bool { return len(d.hostedDB()) == 1 })

	tree := filepath.Join(data, "tree")
	want := walkFiles(t, tree)
	for _, f := range []string{"archlinux/core/os/x86_64/core.db", "archlinux/core/os/x86_64/pub5-1.0-1-x86_64.pkg.tar.zst",
		"proxied/core/os/x86_64/pub1-1.0-1-x86_64.pkg.tar.zst", "archlinux/myrepo/os/x86_64/myrepo.db", "archlinux/myrepo/os/x86_64/hosted-1-1-x86_64.pkg.tar.zst"} {
		if _, ok := want[f]; !ok {
			t.Fatalf("%s not in the tree; have %v", f, keysOfFiles(want))
		}
	}

	// nginx as nobody, with contrib/nginx/mirror.conf: the tree directly
	// for the mirror repo, mirrord for the rest; a plain root for all.
	site, err := os.ReadFile("../contrib/nginx/mirror.conf")
	if err != nil {
		t.Fatal(err)
	}
	maddr, paddr := freeAddr(t), freeAddr(t)
	siteConf := strings.NewReplacer("listen 80;", fmt.Sprintf("listen %s;", maddr), "/var/lib/mirrord/tree", tree,
		"http://127.0.0.1:8080", d.URL, "(core|extra|multilib)", "(core)").Replace(string(site))
	startNginx(t, "nobody nogroup", fmt.Sprintf("server { listen %s; root %s; }\n%s", paddr, tree, siteConf))
	plain := fmt.Sprintf("http://%s/", paddr)
	eventually(t, 20*time.Second, "nginx answers", func() bool {
		resp, err := http.Get(plain + "archlinux/lastupdate")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	for rel, body := range want {
		code, got := httpGet(t, plain+rel)
		if code != 200 || !bytes.Equal(got, body) {
			t.Errorf("nginx as nobody: GET /%s = %d, %d bytes; want 200 and the tree's %d", rel, code, len(got), len(body))
		}
	}
	site1 := fmt.Sprintf("http://%s/", maddr)
	for _, rel := range []string{"archlinux/core/os/x86_64/core.db", "archlinux/core/os/x86_64/pub3-1.0-1-x86_64.pkg.tar.zst", "archlinux/lastupdate",
		"archlinux/myrepo/os/x86_64/myrepo.db", "proxied/core/os/x86_64/pub1-1.0-1-x86_64.pkg.tar.zst"} {
		code, got := httpGet(t, site1+rel)
		if body, ok := want[rel]; code != 200 || (ok && !bytes.Equal(got, body)) {
			t.Errorf("contrib nginx site: GET /%s = %d, %d bytes", rel, code, len(got))
		}
	}

	// rsyncd as nobody, with contrib/rsyncd/rsyncd.conf; a downstream
	// mirror's rsync, twice.
	rdir := publicDir(t)
	rconf, err := os.ReadFile("../contrib/rsyncd/rsyncd.conf")
	if err != nil {
		t.Fatal(err)
	}
	rhost, rport, _ := net.SplitHostPort(freeAddr(t))
	rc := strings.NewReplacer("/var/lib/mirrord/tree", tree, "/run/rsyncd.pid", filepath.Join(rdir, "rsyncd.pid")).Replace(string(rconf))
	os.WriteFile(filepath.Join(rdir, "rsyncd.conf"), []byte(rc), 0o644)
	startTool(t, "rsync", "--daemon", "--no-detach", "--config", filepath.Join(rdir, "rsyncd.conf"), "--port", rport,
		"--address", rhost, "--log-file", filepath.Join(rdir, "rsyncd.log"))
	src := fmt.Sprintf("rsync://%s/mirrord/", net.JoinHostPort(rhost, rport))
	dest := t.TempDir()
	pull := func() string {
		var out []byte
		var err error
		for try := 0; try < 100; try++ { // the daemon may not listen yet
			cmd := exec.Command("rsync", "-rlptH", "--safe-links", "--delete-delay", "--delay-updates", "--stats", src, dest+"/")
			if out, err = cmd.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("Connection refused")) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("rsync from rsyncd: %v\n%s", err, out)
		}
		return string(out)
	}
	pull()
	sameFiles(t, walkFiles(t, dest), want)
	if out := pull(); !strings.Contains(out, "Number of regular files transferred: 0") {
		t.Errorf("a second rsync moved files:\n%s", out)
	}
	// Modes as a downstream sees them.
	filepath.WalkDir(tree, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			if info, _ := de.Info(); info.Mode().Perm() != 0o644 {
				t.Errorf("%s: mode %04o, want 0644", p, info.Mode().Perm())
			}
		}
		return nil
	})
}

// walkFiles maps every file under root (links followed) to its bytes.
func walkFiles(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startNginx runs nginx (as user, when root starts it) with the given
// server blocks until the test ends.
func startNginx(t *testing.T, user, servers string) {
	t.Helper()
	requireTool(t, "nginx")
	dir := publicDir(t)
	if user != "" {
		user = "user " + user + ";"
	}
	conf := fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  %[3]s
}
`, user, dir, servers)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
	startTool(t, "nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

func keysOfFiles(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
