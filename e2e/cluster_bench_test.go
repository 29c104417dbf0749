package e2e

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/mirrord/mirrord/internal/s3test"
)

// TestBenchCluster is `make bench-cluster` (MIRRORD_BENCH=1, on a build
// without the race detector): the benchmarks of issue 17, in one run on
// this machine, printed as lines of docs/BENCHMARKS.md.
//
//  1. hits through a node over the bucket (its local cache) against a
//     node of the fs backend, wrk on the same file, ratio s3/fs (goal
//     ≥ 0.9);
//  2. cold coalescing: 50 clients at once on one uncached 100 MiB file
//     behind a 20 MB/s upstream, one node against three behind nginx
//     (upstream requests: 1 either way);
//  3. takeover: the time from a SIGKILL of a node to the others counting
//     it out, so that its files have a new owner (goal < 5 s).
func TestBenchCluster(t *testing.T) {
	if os.Getenv("MIRRORD_BENCH") == "" {
		t.Skip("a benchmark: make bench-cluster")
	}
	requireTool(t, "wrk", "nginx", "repo-add", "bsdtar")
	s3 := s3test.Start(t)
	up := newUpstream(t)
	repoDir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(repoDir, 0o755)
	small := buildPackage(t, repoDir, testPackage{Name: "small", Version: "1.0-1", Size: 33 << 10})
	repoAdd(t, repoDir, "core", small)
	for _, name := range []string{"big1", "big3"} {
		data := make([]byte, 100<<20)
		rand.Read(data)
		os.WriteFile(filepath.Join(repoDir, name+"-1.0-1-x86_64.pkg.tar.zst"), data, 0o644)
		up.SetFault("/core/os/x86_64/"+name+"-1.0-1-x86_64.pkg.tar.zst", faultserver.Fault{Rate: 20_000_000})
	}

	// 1. Hits.
	quiet := "log: {access: false}\n"
	fsNode := startDaemon(t, "", proxyConfig(up, quiet))
	s3Node := startDaemon(t, "", storageConfig(t, up, s3, "")+quiet)
	path := "/archlinux/core/os/x86_64/" + small
	for _, d := range []*daemon{fsNode, s3Node} {
		if code, _, _ := d.get(path); code != 200 {
			t.Fatalf("warm %s on %s: %d", path, d.URL, code)
		}
	}
	best := map[*daemon]float64{}
	for range 2 {
		for _, d := range []*daemon{fsNode, s3Node} {
			best[d] = max(best[d], wrkRate(t, d.URL+path))
		}
	}
	t.Logf("hits, 33 KiB package: fs node %.0f req/s, s3 node (local cache) %.0f req/s, ratio s3/fs %.2f (goal >= 0.9)",
		best[fsNode], best[s3Node], best[s3Node]/best[fsNode])

	// 2. Cold coalescing, one node and three.
	cold := func(base, name string) (time.Duration, int) {
		start := time.Now()
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				resp, err := http.Get(base + "/archlinux/core/os/x86_64/" + name)
				if err != nil {
					t.Error(err)
					return
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || n != 100<<20 {
					t.Errorf("%s: %d, %d bytes, %v", name, resp.StatusCode, n, err)
				}
			})
		}
		wg.Wait()
		return time.Since(start), up.Requests("/core/os/x86_64/" + name)
	}
	took1, reqs1 := cold(fsNode.URL, "big1-1.0-1-x86_64.pkg.tar.zst")
	c := startCluster(t, up, s3, 3)
	took3, reqs3 := cold(c.LB, "big3-1.0-1-x86_64.pkg.tar.zst")
	t.Logf("cold coalescing, 50 clients, 100 MiB at 20 MB/s: one node %d upstream request(s) in %v; three nodes behind nginx %d in %v",
		reqs1, took1.Round(100*time.Millisecond), reqs3, took3.Round(100*time.Millisecond))

	// 3. Takeover.
	killed := time.Now()
	c.nodes[0].Kill()
	eventually(t, 30*time.Second, "node 1 counting node 0 out", func() bool {
		_, m, _ := c.nodes[1].get("/metrics")
		return bytes.Contains(m, []byte("mirrord_peers_live 2"))
	})
	t.Logf("takeover: node 0 killed, node 1 counts it out after %v (goal < 5s)", time.Since(killed).Round(100*time.Millisecond))
}

var wrkRateRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// wrkRate is wrk's requests per second on url: 2 threads, 32
// connections, 5 seconds.
func wrkRate(t *testing.T, url string) float64 {
	t.Helper()
	out, err := exec.Command("wrk", "-t2", "-c32", "-d5s", url).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	m := wrkRateRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("wrk printed no rate:\n%s", out)
	}
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	if bytes.Contains(out, []byte("Non-2xx")) {
		t.Fatalf("wrk saw errors:\n%s", out)
	}
	return rate
}
