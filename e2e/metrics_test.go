package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/s3test"
)

// TestMetricsDocumented checks that every metric a running mirrord exports
// is in the README's metrics table, and that the table names no metric
// that does not exist, so that the two never drift.
func TestMetricsDocumented(t *testing.T) {
	up := newUpstream(t)
	d := startDaemon(t, "", fmt.Sprintf(`
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%s/$repo/os/$arch"]
    repos:
      core: {mode: proxy}
      mirrored: {mode: mirror}
      custom: {mode: hosted}
`, up.Addr()))
	exported := map[string]bool{}
	scrape := func(d *daemon) {
		_, body, _ := d.get("/metrics")
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "mirrord_") {
				exported[f[2]] = true
			}
		}
	}
	scrape(d)
	// A node of a cluster over a bucket has the storage's and the peers'.
	s3 := s3test.Start(t)
	addr := freeAddr(t)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("metrics-test-secret-0123456789\n"), 0o600)
	node := "http://" + addr
	// Its core a mirror repo: the lease metrics have a series once its
	// first sync (at start) took the repo's lease; with a hosted repo, its
	// Checker's.
	cfg := strings.Replace(storageConfig(t, up, s3, hostedClusterExtra()), "core: {mode: proxy}", "core: {mode: mirror}\n      myrepo: {mode: hosted}", 1)
	n := startDaemon(t, "", cfg+fmt.Sprintf("cluster: {advertise: %q, peers: [%q], secret_file: %s}\n", node, node, secret),
		"--listen", addr)
	eventually(t, 30*time.Second, "the cluster node's first sync under its lease", func() bool {
		_, body, _ := n.get("/metrics")
		return bytes.Contains(body, []byte(`mirrord_lease_acquired_total{lease="sync/archlinux/core"}`))
	})
	scrape(n)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `mirrord_") {
			documented[strings.Trim(strings.Fields(line)[1], "`")] = true
		}
	}
	for name := range exported {
		if !documented[name] {
			t.Errorf("metric %s is exported but not in README.md's metrics table", name)
		}
	}
	for name := range documented {
		if !exported[name] {
			t.Errorf("README.md documents %s, which mirrord does not export", name)
		}
	}
	if len(exported) < 5 {
		t.Errorf("only %d mirrord_ metrics exported", len(exported))
	}
}
