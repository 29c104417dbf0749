package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/alpm"
)

// TestMixedCaseNames: a distro and repos written with capitals are served
// under those names, and pacman's [MyRepo] and [Custom] sections find
// their dbs and install from them: a proxy repo and a hosted one, in a
// distro that gives neither layout nor arch (the defaults: $repo/os/$arch,
// x86_64).
func TestMixedCaseNames(t *testing.T) {
	requireTool(t, "pacman", "repo-add", "bsdtar")
	up := newUpstream(t)
	repoDir := filepath.Join(up.Root(), "MyRepo/os/x86_64")
	os.MkdirAll(repoDir, 0o755)
	hello := buildPackage(t, repoDir, testPackage{Name: "hello", Version: "1.0-1", Size: 1000})
	repoAdd(t, repoDir, "MyRepo", hello)

	const token = "e2e-mixed-case-token"
	sum := sha256.Sum256([]byte(token))
	d := startDaemon(t, "", fmt.Sprintf(`
hosted: {debounce: 50ms, max_delay: 1s}
api: {tokens: [{name: ci, sha256: %s, repos: [MyDistro/Custom]}]}
distros:
  MyDistro:
    upstreams: ["http://%s/$repo/os/$arch"]
    repos:
      MyRepo: {mode: proxy}
      Custom: {mode: hosted}
`, hex.EncodeToString(sum[:]), up.Addr()))

	dir := t.TempDir()
	greet := buildPackage(t, dir, testPackage{Name: "greet", Version: "2.0-1", Size: 1000})
	if out, err := exec.Command(binary, "publish", "--url", d.URL, "--token", token, "--wait", "MyDistro/Custom", filepath.Join(dir, greet)).CombinedOutput(); err != nil {
		t.Fatalf("mirrord publish MyDistro/Custom: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, "Custom.db lists greet", func() bool {
		code, body, _ := d.get("/MyDistro/Custom/os/x86_64/Custom.db")
		if code != 200 {
			return false
		}
		db, err := alpm.ReadDB(bytes.NewReader(body))
		return err == nil && len(db.Packages) == 1
	})

	p := newPacmanRoot(t, d.URL+"/MyDistro/$repo/os/$arch", "MyRepo", "Custom")
	p.mustRun("-Sy")
	p.mustRun("-S", "hello", "greet")
	for _, f := range []string{"usr/share/hello/data", "usr/share/greet/data"} {
		if !p.installed(f) {
			t.Errorf("%s not installed", f)
		}
	}
	if n := up.Requests("/MyRepo/os/x86_64/MyRepo.db"); n == 0 {
		t.Error("upstream was never asked for /MyRepo/os/x86_64/MyRepo.db")
	}
	// The names are the names: no other spelling is served.
	for _, path := range []string{"/MyDistro/myrepo/os/x86_64/myrepo.db", "/mydistro/MyRepo/os/x86_64/MyRepo.db", "/MyDistro/custom/os/x86_64/custom.db"} {
		if code, _, _ := d.get(path); code != 404 {
			t.Errorf("GET %s = %d, want 404", path, code)
		}
	}
}

// TestConfigSources: `mirrord config --sources` says where each value
// came from, and redacts token hashes as `mirrord config` does.
func TestConfigSources(t *testing.T) {
	dataDir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "m.yaml")
	hash := strings.Repeat("e", 64)
	os.WriteFile(cfg, []byte("cache: {max_size: 1GiB}\napi: {tokens: [{name: ci, sha256: "+hash+", repos: [archlinux/custom]}]}\n"), 0o644)
	cmd := exec.Command(binary, "config", "--sources", "--config", cfg, "--data-dir", dataDir)
	cmd.Env = append(os.Environ(), "MIRRORD_HOSTED_WORKERS=7")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mirrord config --sources: %v\n%s", err, out)
	}
	for _, want := range []string{
		"# file: " + cfg + "\n",
		"data_dir  flag --data-dir  " + dataDir,
		"hosted.workers  env MIRRORD_HOSTED_WORKERS  7",
		"cache.max_size  file  1GiB",
		"listen  default  127.0.0.1:8080",
		"distros.archlinux.repos.custom.mode  default  hosted",
		"sha256: <redacted>",
	} {
		// Columns are padded: compare with runs of spaces collapsed.
		if !strings.Contains(strings.Join(strings.Fields(string(out)), " ")+" ", strings.Join(strings.Fields(want), " ")) {
			t.Errorf("mirrord config --sources lacks %q:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte(hash)) {
		t.Errorf("mirrord config --sources shows the token hash:\n%s", out)
	}
}
