package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// adminToken is the token the daemon made in its data dir.
func (d *daemon) adminToken() string {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.DataDir, "admin.token"))
	if err != nil {
		d.t.Fatalf("admin token: %v", err)
	}
	return strings.TrimSpace(string(data))
}

// post sends a write with the given headers ("Name", "value", ...) and
// returns its status.
func post(t *testing.T, method, url string, body []byte, header ...string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// reverseProxy runs nginx in front of addr, as an operator would put it
// on the same host (every client then reaches mirrord from loopback).
func reverseProxy(t *testing.T, addr string) string {
	t.Helper()
	requireTool(t, "nginx")
	lb := freeAddr(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "root"
	}
	startNginx(t, user, fmt.Sprintf(`server {
    listen %s;
    client_max_body_size 0;
    location / { proxy_pass http://%s; }
  }`, lb, addr))
	url := "http://" + lb
	eventually(t, 20*time.Second, "nginx answers", func() bool {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return url
}

// TestWritesNeedToken: on the defaults, no anonymous write gets through,
// from loopback, through a reverse proxy on the same host, or from a web
// page; the machine itself publishes with the admin token file.
func TestWritesNeedToken(t *testing.T) {
	d := startDaemon(t, "", "")
	tokenFile := filepath.Join(d.DataDir, "admin.token")
	info, err := os.Stat(tokenFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v, mode %v; want 0600", err, info.Mode())
	}
	admin := d.adminToken()
	if strings.Contains(d.Log(), admin) || !strings.Contains(d.Log(), tokenFile) {
		t.Errorf("the log must name %s and never hold the token:\n%s", tokenFile, d.Log())
	}
	dir := t.TempDir()
	file := buildPackage(t, dir, testPackage{Name: "anon", Version: "1-1", Size: 32})
	data, _ := os.ReadFile(filepath.Join(dir, file))
	upload := "/api/v1/repos/archlinux/custom/packages?filename=" + file
	nginx := reverseProxy(t, strings.TrimPrefix(d.URL, "http://"))
	cases := []struct {
		name, method, url string
		header            []string
		code              int
	}{
		{"loopback, no token", "POST", d.URL + upload, nil, 401},
		{"through nginx, no token", "POST", nginx + upload, nil, 401},
		{"a web page's simple POST", "POST", d.URL + upload, []string{"Content-Type", "text/plain", "Origin", "http://evil.example"}, 403},
		{"a web page with the token", "POST", d.URL + upload, []string{"Origin", "http://evil.example", "Authorization", "Bearer " + admin}, 403},
		{"DNS rebinding, no token", "POST", d.URL + upload, []string{"Host", "evil.example:8080", "Origin", "http://evil.example:8080"}, 401},
		{"through nginx from a page", "POST", nginx + upload, []string{"Origin", "http://evil.example", "Authorization", "Bearer " + admin}, 403},
		{"token in the query", "POST", d.URL + upload + "&token=" + admin, nil, 401},
		{"sync, no token", "POST", d.URL + "/api/v1/sync/archlinux", nil, 401},
		{"sync through nginx, no token", "POST", nginx + "/api/v1/sync/archlinux", nil, 401},
		{"delete, no token", "DELETE", d.URL + "/api/v1/repos/archlinux/custom/x86_64/packages/anon", nil, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if code := post(t, c.method, c.url, data, c.header...); code != c.code {
				t.Errorf("%s %s = %d, want %d", c.method, c.url, code, c.code)
			}
		})
	}
	if code := post(t, "POST", nginx+upload, data, "Authorization", "Bearer "+admin); code != 202 {
		t.Errorf("through nginx with the admin token = %d, want 202", code)
	}

	// This machine publishes with the token file.
	next := buildPackage(t, dir, testPackage{Name: "mine", Version: "1-1", Size: 32})
	out, err := exec.Command(binary, "publish", "--url", d.URL, "--token-file", tokenFile, "--wait", "archlinux/custom", filepath.Join(dir, next)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "published "+next) {
		t.Fatalf("mirrord publish --token-file: %v\n%s", err, out)
	}
	cmd := exec.Command(binary, "publish", "--url", d.URL, "--wait", "archlinux/custom", filepath.Join(dir, next))
	cmd.Env = append(os.Environ(), "MIRRORD_TOKEN=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "needs a token") {
		t.Errorf("mirrord publish without a token: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "mine in custom.db", func() bool {
		code, _, _ := d.get("/api/v1/repos/archlinux/custom/x86_64/packages/mine")
		return code == 200
	})
	out, err = exec.Command(binary, "delete", "--url", d.URL, "--token-file", tokenFile, "archlinux/custom", "mine").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "deleted from archlinux/custom/x86_64") {
		t.Errorf("mirrord delete: %v\n%s", err, out)
	}

	// mirrord token: a token and the line whose hash is the token's.
	out, err = exec.Command(binary, "token", "--name", "ci", "--repo", "archlinux/custom").Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || len(lines) != 2 {
		t.Fatalf("mirrord token: %v\n%s", err, out)
	}
	sum := sha256.Sum256([]byte(lines[0]))
	want := fmt.Sprintf(`    - {name: ci, sha256: "%s", repos: ["archlinux/custom"]}`, hex.EncodeToString(sum[:]))
	if len(lines[0]) < 40 || lines[1] != want {
		t.Errorf("mirrord token printed\n%s\nwant a token and %s", out, want)
	}
}

// TestExampleConfigHasNoToken: the example config, copied as the README
// says, does not start; with its placeholder token removed it runs on the
// admin token, and no guessable token writes.
func TestExampleConfigHasNoToken(t *testing.T) {
	src, err := os.ReadFile("../config/mirrord.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// No traffic leaves loopback: the example's public mirrors become a
	// closed local port.
	example := string(src)
	for _, u := range []string{"https://geo.mirror.pkgbuild.com", "https://mirrors.kernel.org/archlinux", "http://mirror.archlinuxarm.org"} {
		if !strings.Contains(example, u) {
			t.Fatalf("example config no longer names %s; update this test", u)
		}
		example = strings.ReplaceAll(example, u, "http://127.0.0.1:9")
	}
	path := filepath.Join(t.TempDir(), "mirrord.yaml")
	os.WriteFile(path, []byte(example), 0o644)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "serve", "--config", path, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "api.tokens[0].sha256") || !strings.Contains(string(out), "mirrord token") {
		t.Fatalf("serve with the example as shipped: %v\n%s\nwant it refused, naming api.tokens[0].sha256 and `mirrord token`", err, out)
	}

	// Without the tokens section: the admin token, and nothing else.
	i, j := strings.Index(example, "  tokens:\n"), strings.Index(example, `      repos: ["archlinux/custom"]`+"\n")
	if i < 0 || j < i {
		t.Fatal("example config: no tokens section found")
	}
	noTokens := example[:i] + example[j+len(`      repos: ["archlinux/custom"]`+"\n"):]
	d := startDaemon(t, "", noTokens)
	dir := t.TempDir()
	file := buildPackage(t, dir, testPackage{Name: "guess", Version: "1-1", Size: 32})
	data, _ := os.ReadFile(filepath.Join(dir, file))
	upload := d.URL + "/api/v1/repos/archlinux/custom/packages?filename=" + file
	for _, guess := range []string{"test", "admin", "token", "secret", "changeme", "password", "mirrord", "ci", "REPLACE-ME: run mirrord token", "0"} {
		if code := post(t, "POST", upload, data, "Authorization", "Bearer "+guess); code != 401 {
			t.Errorf("upload with the guess %q = %d, want 401", guess, code)
		}
	}
	if code := post(t, "POST", upload, data, "Authorization", "Bearer "+d.adminToken()); code != 202 {
		t.Errorf("upload with the admin token = %d, want 202", code)
	}
}

// gpgHome is a throwaway GnuPG home driven in batch mode.
type gpgHome struct {
	t   *testing.T
	dir string
}

func newGPG(t *testing.T) *gpgHome {
	t.Helper()
	requireTool(t, "gpg")
	dir, err := os.MkdirTemp("", "gpg-") // short: gpg-agent's socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700)
	g := &gpgHome{t: t, dir: dir}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", dir, "--kill", "all").Run()
		os.RemoveAll(dir)
	})
	return g
}

func (g *gpgHome) run(args ...string) []byte {
	g.t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", g.dir, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// newKey makes a signing key for uid and returns its fingerprint.
func (g *gpgHome) newKey(uid string) string {
	g.run("--quick-generate-key", uid, "default", "sign", "never")
	for _, line := range strings.Split(string(g.run("--with-colons", "--list-keys", uid)), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" {
			return f[9]
		}
	}
	g.t.Fatalf("no fingerprint for %s", uid)
	return ""
}

// sign writes file.sig, a binary detached signature by uid.
func (g *gpgHome) sign(uid, file string) {
	g.run("--local-user", uid, "--detach-sign", "--no-armor", "-o", file+".sig", file)
}

// TestSignedRepoPacman: a hosted repo signed by a key made with gpg is
// installed from by real pacman with SigLevel = Required; uploads are
// verified against the trusted keys and nothing unverified is published.
func TestSignedRepoPacman(t *testing.T) {
	requireTool(t, "pacman", "pacman-key")
	g := newGPG(t)
	repoFpr := g.newKey("Repo Key <repo@example.org>")
	upFpr := g.newKey("Uploader <up@example.org>")
	g.newKey("Stranger <stranger@example.org>")
	keys := t.TempDir()
	os.WriteFile(filepath.Join(keys, "repo.asc"), g.run("--armor", "--export-secret-keys", repoFpr), 0o600)
	os.WriteFile(filepath.Join(keys, "uploaders.asc"), g.run("--armor", "--export", upFpr), 0o644)
	cfg := strings.Replace(hostedConfig("200ms", "5s"), "hosted: {", "hosted: {signing_key: "+filepath.Join(keys, "repo.asc")+
		", trusted_keys: "+filepath.Join(keys, "uploaders.asc")+", ", 1)
	d := startDaemon(t, "", cfg)

	dir := t.TempDir()
	plain := buildPackage(t, dir, testPackage{Name: "plain", Version: "1-1", Size: 64})
	byUploader := buildPackage(t, dir, testPackage{Name: "byuploader", Version: "1-1", Arch: "any", Size: 64})
	g.sign("up@example.org", filepath.Join(dir, byUploader))
	byStranger := buildPackage(t, dir, testPackage{Name: "bystranger", Version: "1-1", Size: 64})
	g.sign("stranger@example.org", filepath.Join(dir, byStranger))
	garbage := buildPackage(t, dir, testPackage{Name: "garbage", Version: "1-1", Size: 64})
	os.WriteFile(filepath.Join(dir, garbage+".sig"), []byte("garbage"), 0o644)
	publish := func(file string) (string, error) {
		out, err := exec.Command(binary, "publish", "--url", d.URL, "--token", hostedToken, "--wait", "archlinux/myrepo", filepath.Join(dir, file)).CombinedOutput()
		return string(out), err
	}
	for _, f := range []string{plain, byUploader} {
		if out, err := publish(f); err != nil {
			t.Fatalf("publish %s: %v\n%s", f, err, out)
		}
	}
	for _, c := range []struct{ file, want string }{{byStranger, "no trusted key"}, {garbage, "not a binary OpenPGP"}} {
		out, err := publish(c.file)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("publish %s: %v, want a failed job saying %q\n%s", c.file, err, c.want, out)
		}
		if _, err := os.Stat(filepath.Join(d.DataDir, "tree/archlinux/myrepo/os/x86_64", c.file)); err == nil {
			t.Errorf("refused %s is in the tree", c.file)
		}
	}
	// The job of a refused upload says 422, with the key seen.
	out := mustOut(t, exec.Command(binary, "publish", "--url", d.URL, "--token", hostedToken, "archlinux/myrepo", filepath.Join(dir, byStranger)))
	_, id, ok := strings.Cut(strings.TrimSpace(out), "queued as job ")
	if !ok {
		t.Fatalf("mirrord publish printed %q", out)
	}
	_, body, _ := d.get("/api/v1/jobs/" + id + "?wait=30s")
	var j struct {
		Status, Error string
		Code          int
	}
	json.Unmarshal(body, &j)
	if j.Status != "failed" || j.Code != 422 || !strings.Contains(j.Error, "made by key") {
		t.Errorf("job of a stranger's signature = %s", body)
	}
	eventually(t, 30*time.Second, "plain and byuploader in myrepo.db", func() bool { return len(d.hostedDB()) == 2 })
	for _, p := range d.hostedDB() {
		if p.Name == "byuploader" {
			sig, _ := os.ReadFile(filepath.Join(dir, byUploader+".sig"))
			if p.PGPSig != base64.StdEncoding.EncodeToString(sig) {
				t.Errorf("byuploader's %%PGPSIG%% is not the uploaded signature")
			}
		}
		if p.PGPSig == "" {
			t.Errorf("%s has no %%PGPSIG%%", p.Name)
		}
	}
	_, body, _ = d.get("/api/v1/repos/archlinux/myrepo/x86_64/packages/byuploader")
	if !strings.Contains(string(body), `"signed_by": "`+upFpr+`"`) {
		t.Errorf("API does not say byuploader is signed by %s: %s", upFpr, body)
	}

	if _, page, _ := d.get("/ui/pkg/archlinux/myrepo/x86_64/byuploader"); !bytes.Contains(page, []byte("signed by "+upFpr)) {
		t.Errorf("package page does not say signed by %s", upFpr)
	}

	// The client side: the repo's key from the API into pacman's keyring,
	// locally signed, SigLevel = Required.
	code, key, hdr := d.get("/api/v1/repos/archlinux/myrepo/key")
	if code != 200 || hdr.Get("X-Key-Fingerprint") != repoFpr {
		t.Fatalf("GET key = %d, fingerprint %q, want %s", code, hdr.Get("X-Key-Fingerprint"), repoFpr)
	}
	code, page, _ := d.get("/ui/repo/archlinux/myrepo")
	for _, want := range []string{repoFpr, "SigLevel = Required", "pacman-key --add", "pacman-key --lsign-key " + repoFpr} {
		if code != 200 || !bytes.Contains(page, []byte(want)) {
			t.Errorf("repo page (%d) lacks %q", code, want)
		}
	}
	p := newPacmanRoot(t, d.URL+"/archlinux/$repo/os/$arch", "myrepo")
	conf, _ := os.ReadFile(p.conf)
	os.WriteFile(p.conf, bytes.Replace(conf, []byte("SigLevel = Never"), []byte("SigLevel = Required"), 1), 0o644)
	gpgdir := filepath.Join(p.dir, "gnupg")
	os.WriteFile(filepath.Join(keys, "repo.pub.asc"), key, 0o644)
	os.WriteFile(filepath.Join(keys, "up.pub.asc"), g.run("--armor", "--export", upFpr), 0o644)
	for _, args := range [][]string{{"--init"}, {"--add", filepath.Join(keys, "repo.pub.asc")}, {"--lsign-key", repoFpr},
		{"--add", filepath.Join(keys, "up.pub.asc")}, {"--lsign-key", upFpr}} {
		mustOut(t, exec.Command("pacman-key", append([]string{"--gpgdir", gpgdir}, args...)...))
	}
	p.mustRun("-Sy")
	p.mustRun("-S", "plain", "byuploader")
	if !p.installed("usr/share/plain/data") || !p.installed("usr/share/byuploader/data") {
		t.Error("signed packages not installed")
	}
	// gpg itself accepts the db signature.
	_, db, _ := d.get("/archlinux/myrepo/os/x86_64/myrepo.db")
	_, dbSig, _ := d.get("/archlinux/myrepo/os/x86_64/myrepo.db.sig")
	os.WriteFile(filepath.Join(dir, "myrepo.db"), db, 0o644)
	os.WriteFile(filepath.Join(dir, "myrepo.db.sig"), dbSig, 0o644)
	g.run("--verify", filepath.Join(dir, "myrepo.db.sig"), filepath.Join(dir, "myrepo.db"))

	// A db changed after signing (on disk, while mirrord is stopped: a
	// running one serves hot files from memory) is refused by pacman.
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(d.DataDir, "tree/archlinux/myrepo/os/x86_64/myrepo.db.tar.gz")
	tampered := append(append([]byte{}, db...), 0) // trailing byte: still a valid gzip stream for libarchive
	os.WriteFile(rel, tampered, 0o644)
	old := d.URL
	d = startDaemon(t, d.DataDir, cfg)
	conf, _ = os.ReadFile(p.conf)
	os.WriteFile(p.conf, bytes.ReplaceAll(conf, []byte(old), []byte(d.URL)), 0o644)
	if _, got, _ := d.get("/archlinux/myrepo/os/x86_64/myrepo.db"); !bytes.Equal(got, tampered) {
		t.Fatal("the tampered db is not what mirrord serves; the check below would prove nothing")
	}
	if out, err := p.run("-Syy"); err == nil || !strings.Contains(out, "signature") {
		t.Errorf("pacman -Syy on a tampered db: %v, want a signature failure\n%s", err, out)
	}
}

func mustOut(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out)
}

// tokenHash is the api.tokens sha256 of a token.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
