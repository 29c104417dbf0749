package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/mirrord/mirrord/internal/faultserver"
)

// TestKillDuringFill kills mirrord with SIGKILL while it writes a cold
// file, and checks that after a restart no partial file is visible and
// the file is fetched whole.
func TestKillDuringFill(t *testing.T) {
	up := newUpstream(t)
	dir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(dir, 0o755)
	data := make([]byte, 2<<20)
	rand.Read(data)
	const name = "big-1.0-1-x86_64.pkg.tar.zst"
	os.WriteFile(filepath.Join(dir, name), data, 0o644)
	gate := make(chan struct{})
	defer close(gate)
	up.SetFault("/core/os/x86_64/"+name, faultserver.Fault{Gate: gate, GateAfter: 1 << 20, Times: 1})

	cfg := fmt.Sprintf(`
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%s/$repo/os/$arch"]
    repos:
      core: {mode: proxy}
`, up.Addr())
	dataDir := t.TempDir()
	d := startDaemon(t, dataDir, cfg)
	resp, err := http.Get(d.URL + "/archlinux/core/os/x86_64/" + name)
	if err != nil {
		t.Fatal(err)
	}
	// Half the file is written: the gate holds the rest.
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatalf("first half: %v", err)
	}
	d.Kill()
	resp.Body.Close()

	if _, err := os.Stat(filepath.Join(dataDir, "tree/archlinux/core/os/x86_64", name)); err == nil {
		t.Fatal("a partial file is in the tree after kill -9")
	}
	d = startDaemon(t, dataDir, cfg)
	if left, _ := os.ReadDir(filepath.Join(dataDir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %d files after restart", len(left))
	}
	code, body, _ := d.get("/archlinux/core/os/x86_64/" + name)
	if code != 200 || !bytes.Equal(body, data) {
		t.Errorf("after restart GET = %d, %d bytes, identical %v", code, len(body), bytes.Equal(body, data))
	}
}
