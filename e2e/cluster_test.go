package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/cluster"
	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/mirrord/mirrord/internal/s3test"
	"github.com/mirrord/mirrord/internal/store/s3obj"
)

// testCluster is three mirrord nodes over one bucket, behind nginx
// round-robin (no hashing: which node owns a file is mirrord's to say).
type testCluster struct {
	t       *testing.T
	nodes   []*daemon
	urls    []string // advertise URLs, in node order
	configs []string
	LB      string // nginx's URL
}

func startCluster(t *testing.T, up *faultserver.Server, s3 *s3test.Server, n int) *testCluster {
	t.Helper()
	return startClusterMode(t, up, s3, n, "proxy", "")
}

// startClusterMode is startCluster with core in mode (proxy or mirror),
// and extra top-level config.
func startClusterMode(t *testing.T, up *faultserver.Server, s3 *s3test.Server, n int, mode, extra string) *testCluster {
	t.Helper()
	return startClusterRepos(t, up, s3, n, "core: {mode: "+mode+"}", extra)
}

// startClusterRepos is startClusterMode with the distro's repos given
// whole, one per line: a line "core: {mode: ...}" and any others.
func startClusterRepos(t *testing.T, up *faultserver.Server, s3 *s3test.Server, n int, repos, extra string) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	// Each node on a loopback address of its own: a port found free is
	// bound a moment later, and on 127.0.0.1 an outgoing connection of
	// another test could take it meanwhile; nothing else uses these.
	addrs := make([]string, n)
	for i := range n {
		addrs[i] = freeAddr(t)
		c.urls = append(c.urls, "http://"+addrs[i])
	}
	secret := filepath.Join(t.TempDir(), "cluster-secret")
	os.WriteFile(secret, []byte("the-clusters-secret-0123456789\n"), 0o600)
	for i := range n {
		cfg := strings.Replace(storageConfig(t, up, s3, extra), "core: {mode: proxy}", strings.ReplaceAll(repos, "\n", "\n      "), 1) + fmt.Sprintf(`
cluster:
  node: node%d
  advertise: %s
  peers: [%s]
  secret_file: %s
`, i, c.urls[i], strings.Join(c.urls, ", "), secret)
		c.configs = append(c.configs, cfg)
		c.nodes = append(c.nodes, startDaemon(t, "", cfg, "--listen", addrs[i]))
	}
	var servers strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&servers, "server %s max_fails=0;\n", a)
	}
	lb := freeAddr(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "root"
	}
	// Round-robin, and a request that fails on one node is not retried on
	// the next: what a client gets is what the node it reached answered.
	startNginx(t, user, fmt.Sprintf(`upstream mirrords {
    %s
  }
  server {
    listen %s;
    location / {
      proxy_pass http://mirrords;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_next_upstream off;
    }
  }`, servers.String(), lb))
	c.LB = "http://" + lb
	// Before any traffic, every node sees every other: else one would
	// see other owners for a while.
	for i, d := range c.nodes {
		eventually(t, 20*time.Second, fmt.Sprintf("node %d counting %d live nodes", i, n), func() bool {
			_, m, _ := d.get("/metrics")
			return bytes.Contains(m, []byte(fmt.Sprintf("mirrord_peers_live %d", n)))
		})
	}
	eventually(t, 20*time.Second, "nginx in front of the nodes answers", func() bool {
		resp, err := http.Get(c.LB + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return c
}

// TestClusterColdFile: 50 clients through the balancer ask three nodes
// for one cold 100 MiB file at once: upstream is asked once, every body
// is right, and the nodes that do not own it got it from the one that
// does. pacman -Sy and -S work through the balancer.
func TestClusterColdFile(t *testing.T) {
	requireTool(t, "pacman", "repo-add", "bsdtar", "nginx")
	s3 := s3test.Start(t)
	up := newUpstream(t)
	repoDir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(repoDir, 0o755)
	hello := buildPackage(t, repoDir, testPackage{Name: "hello", Version: "1.0-1", Size: 100_000})
	repoAdd(t, repoDir, "core", hello)
	big := "big-1.0-1-x86_64.pkg.tar.zst" // not in the db: checked by length alone
	data := make([]byte, 100<<20)
	rand.Read(data)
	os.WriteFile(filepath.Join(repoDir, big), data, 0o644)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])

	// The body waits after 1 MiB until every client has its response
	// head: then all 50 are in the flights at once.
	gate := make(chan struct{})
	up.SetFault("/core/os/x86_64/"+big, faultserver.Fault{Gate: gate, GateAfter: 1 << 20})
	c := startCluster(t, up, s3, 3)

	const clients = 50
	var heads atomic.Int32
	allHeads := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			resp, err := http.Get(c.LB + "/archlinux/core/os/x86_64/" + big)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if heads.Add(1) == clients {
				close(allHeads)
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if got := hex.EncodeToString(h.Sum(nil)); err != nil || resp.StatusCode != 200 || got != want {
				errs <- fmt.Errorf("status %d, %d bytes, sha256 %s, %v", resp.StatusCode, n, got, err)
			}
		})
	}
	select {
	case <-allHeads:
	case <-time.After(2 * time.Minute):
		t.Errorf("only %d of %d clients got a response head", heads.Load(), clients)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a client of the 100 MiB file: %v", err)
	}
	if n := up.Requests("/core/os/x86_64/" + big); n != 1 {
		t.Errorf("upstream was asked %d times for the file; want 1 for the whole cluster", n)
	}
	// Counted once each node has committed the file, which may be just
	// after its clients have their last byte.
	owner := ownerOf(t, c, "archlinux/core/os/x86_64/"+big)
	for i, d := range c.nodes {
		if i == owner {
			continue
		}
		eventually(t, 30*time.Second, fmt.Sprintf("node %d counting the file as from its owner", i), func() bool {
			_, m, _ := d.get("/metrics")
			return bytes.Contains(m, []byte(`mirrord_peer_filled_files_total{repo="archlinux/core"} 1`))
		})
	}
	if _, m, _ := c.nodes[owner].get("/metrics"); !bytes.Contains(m, []byte(`mirrord_fetched_bytes_total{repo="archlinux/core"} 1.048576e+08`)) {
		t.Errorf("the owner, node %d, did not fetch the file's 100 MiB upstream", owner)
	}
	// Each client's request is counted once, by the node it reached; the
	// owner's answers to its peers are the peer route's.
	var counted float64
	for _, d := range c.nodes {
		_, m, _ := d.get("/metrics")
		for _, l := range strings.Split(string(m), "\n") {
			if v, ok := strings.CutPrefix(l, `mirrord_requests_total{repo="archlinux/core",result=`); ok {
				_, num, _ := strings.Cut(v, " ")
				f, _ := strconv.ParseFloat(num, 64)
				counted += f
			}
		}
	}
	if counted != clients {
		t.Errorf("the nodes counted %v requests of the repo; want %d, one per client", counted, clients)
	}

	// A file upstream lacks: the owner asks upstream once, and the node
	// that asked it answers 404 without asking upstream itself.
	missing := "missing-1.0-1-x86_64.pkg.tar.zst"
	asker := (ownerOf(t, c, "archlinux/core/os/x86_64/"+missing) + 1) % len(c.nodes)
	if code, _, _ := c.nodes[asker].get("/archlinux/core/os/x86_64/" + missing); code != 404 {
		t.Errorf("a file upstream lacks, through a node that does not own it: %d; want 404", code)
	}
	if n := up.Requests("/core/os/x86_64/" + missing); n != 1 {
		t.Errorf("upstream was asked %d times for a file it lacks; want 1 (the owner)", n)
	}

	p := newPacmanRoot(t, c.LB+"/archlinux/$repo/os/$arch", "core")
	p.mustRun("-Sy")
	p.mustRun("-S", "hello")
	if _, err := os.Stat(filepath.Join(p.dir, "db", "local", "hello-1.0-1")); err != nil {
		t.Errorf("pacman -S through the balancer did not install hello: %v", err)
	}
	if n := up.Requests("/core/os/x86_64/" + hello); n != 1 {
		t.Errorf("upstream was asked %d times for %s; want 1", n, hello)
	}
}

// TestClusterOwnerDies: the owner of a file is killed (SIGKILL) while
// another node streams the file from it. That node's client never gets a
// whole body; the node counts the owner out within seconds and serves
// the file itself; nothing partial is ever served as complete.
func TestClusterOwnerDies(t *testing.T) {
	requireTool(t, "nginx")
	s3 := s3test.Start(t)
	up := newUpstream(t)
	repoDir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(repoDir, 0o755)
	c := startCluster(t, up, s3, 3)

	// A file that node 0 owns.
	name, data := "", []byte(nil)
	for i := 0; name == ""; i++ {
		cand := fmt.Sprintf("f%d-1.0-1-x86_64.pkg.tar.zst", i)
		if ownerOf(t, c, "archlinux/core/os/x86_64/"+cand) == 0 {
			name = cand
		}
	}
	data = make([]byte, 8<<20)
	rand.Read(data)
	os.WriteFile(filepath.Join(repoDir, name), data, 0o644)
	gate := make(chan struct{})
	up.SetFault("/core/os/x86_64/"+name, faultserver.Fault{Gate: gate, GateAfter: 1 << 20})

	resp, err := http.Get(c.nodes[1].URL + "/archlinux/core/os/x86_64/" + name)
	if err != nil {
		t.Fatal(err)
	}
	<-up.Seen("/core/os/x86_64/"+name, 1) // node 0, the owner, is fetching it
	killed := time.Now()
	c.nodes[0].Kill()
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && bytes.Equal(got, data) {
		t.Fatal("the client of the killed owner's file got it whole: the gate never held")
	}
	if err == nil {
		t.Errorf("a body cut by the owner's death read as complete (status %d, %d of %d bytes: %q)", resp.StatusCode, len(got), len(data), got[:min(len(got), 100)])
	}
	up.ClearFaults()
	close(gate)
	var took time.Duration
	eventually(t, 30*time.Second, "node 1 serving the file after the owner's death", func() bool {
		code, body, _ := c.nodes[1].get("/archlinux/core/os/x86_64/" + name)
		took = time.Since(killed)
		return code == 200 && bytes.Equal(body, data)
	})
	t.Logf("node 1 served the dead owner's file %v after the kill", took.Round(100*time.Millisecond))
	eventually(t, 10*time.Second, "node 1 counting 2 live nodes", func() bool {
		_, m, _ := c.nodes[1].get("/metrics")
		return bytes.Contains(m, []byte("mirrord_peers_live 2"))
	})
}

// ownerOf is the index of the node that owns key: rendezvous hashing
// is the same computation on every node, so internal/cluster over the
// same URLs says what the nodes say.
func ownerOf(t *testing.T, c *testCluster, key string) int {
	t.Helper()
	view, err := cluster.New(cluster.Options{Self: c.urls[0], Peers: c.urls, Secret: "any"})
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := view.Owner(key)
	return slices.Index(c.urls, owner)
}

// TestClusterMirrorSync: three nodes start with a mirror repo. Their syncs
// take turns under a lease in the bucket, so each package is fetched from
// upstream once in the whole cluster: the first sync puts each file in the
// bucket before it moves on, and the others bring it from there, checked
// against their own db. Every node then serves the repo.
func TestClusterMirrorSync(t *testing.T) {
	requireTool(t, "repo-add", "bsdtar", "nginx")
	var pkgs []testPackage
	for i := range 12 {
		pkgs = append(pkgs, testPackage{Name: fmt.Sprintf("m%02d", i), Version: "1.0-1", Size: 40_000 + i*1000})
	}
	up, upDir := mirrorUpstream(t, pkgs)
	s3 := s3test.Start(t)
	// db_max_age: how often a node looks at the manifest in the bucket.
	c := startClusterMode(t, up, s3, 3, "mirror", "cache: {db_max_age: 1s}")
	for i, d := range c.nodes {
		eventually(t, 2*time.Minute, fmt.Sprintf("node %d's first sync done", i), func() bool {
			st := syncState(t, d, "archlinux/core")
			ok, _ := st["last_success"].(string)
			return ok != "" && !strings.HasPrefix(ok, "0001-")
		})
	}
	// Each node's sync ran under the repo's lease, and none lost it.
	for i, d := range c.nodes {
		_, m, _ := d.get("/metrics")
		if !bytes.Contains(m, []byte(`mirrord_lease_acquired_total{lease="sync/archlinux/core"} `)) ||
			!bytes.Contains(m, []byte(`mirrord_lease_lost_total{lease="sync/archlinux/core"} 0`)) {
			t.Errorf("node %d: no mirrord_lease_acquired_total of its sync, or a lease lost", i)
		}
	}
	files := treeFiles(t, upDir)
	for f := range files {
		if !strings.Contains(f, ".pkg.tar") {
			continue
		}
		if n := up.Requests("/core/os/x86_64/" + f); n != 1 {
			t.Errorf("upstream served %s %d times to three nodes' syncs; want 1", f, n)
		}
	}
	for i, d := range c.nodes {
		for f, want := range files {
			code, body, _ := d.get("/archlinux/core/os/x86_64/" + f)
			if code != 200 || !bytes.Equal(body, want) {
				t.Errorf("node %d: %s = %d, %d bytes; want the upstream's %d", i, f, code, len(body), len(want))
			}
		}
	}
	var fromBucket int
	for _, d := range c.nodes {
		if strings.Contains(d.Log(), "sync started") && strings.Contains(d.Log(), `msg="sync done"`) {
			_, m, _ := d.get("/metrics")
			if bytes.Contains(m, []byte(`mirrord_storage_filled_files_total{repo="archlinux/core"} 12`)) {
				fromBucket++
			}
		}
	}
	if fromBucket != 2 {
		t.Errorf("%d nodes brought the 12 packages from the bucket; want 2 (the first fetched them upstream)", fromBucket)
	}
	for _, db := range []string{"core.db", "core.files"} {
		if n := up.Requests("/core/os/x86_64/" + db); n != 1 {
			t.Errorf("upstream served %s %d times to three nodes' syncs; want 1 (the others take the first's from the bucket)", db, n)
		}
	}

	// Upstream moves on; a sync asked of one node (which asks upstream)
	// reaches the others through the bucket's manifest, and upstream is
	// asked once more for the db and once for the new package.
	newPkg := buildPackage(t, upDir, testPackage{Name: "m12", Version: "1.0-1", Size: 52_000})
	repoAdd(t, upDir, "core", newPkg)
	os.WriteFile(filepath.Join(up.Root(), "lastupdate"), []byte("1700000100\n"), 0o644)
	files = treeFiles(t, upDir)
	if code := post(t, "POST", c.nodes[0].URL+"/api/v1/sync/archlinux/core", nil, "Authorization", "Bearer "+c.nodes[0].adminToken()); code != http.StatusAccepted {
		t.Fatalf("POST sync = %d, want 202", code)
	}
	for i, d := range c.nodes {
		eventually(t, time.Minute, fmt.Sprintf("node %d serves the new core.db", i), func() bool {
			code, body, _ := d.get("/archlinux/core/os/x86_64/core.db")
			return code == 200 && bytes.Equal(body, files["core.db"])
		})
		if code, body, _ := d.get("/archlinux/core/os/x86_64/" + newPkg); code != 200 || !bytes.Equal(body, files[newPkg]) {
			t.Errorf("node %d: %s = %d, %d bytes; want the upstream's", i, newPkg, code, len(body))
		}
	}
	if n := up.Requests("/core/os/x86_64/core.db"); n != 2 {
		t.Errorf("upstream served core.db %d times for two states; want 2", n)
	}
	if n := up.Requests("/core/os/x86_64/" + newPkg); n != 1 {
		t.Errorf("upstream served %s %d times; want 1", newPkg, n)
	}
	// The bucket's tree is a mirror of the repo's current state too.
	bucket, err := s3obj.New(s3obj.Options{Endpoint: s3.Endpoint, Bucket: s3.Bucket, Prefix: "tree", PathStyle: true, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := bucket.Get(t.Context(), "archlinux/core/os/x86_64/core.db")
	if err != nil {
		t.Fatalf("the bucket's core.db: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, files["core.db"]) {
		t.Errorf("the bucket's core.db: %d bytes, not upstream's current %d", len(got), len(files["core.db"]))
	}

	// Node 2 loses its disk and starts again: its first sync takes the
	// bucket's state (the db published before its packages are copied,
	// which come from the other nodes or the bucket), and upstream is
	// asked nothing, not even for a package signature: the manifest says
	// that upstream publishes none.
	before := up.Total()
	c.nodes[2].Kill()
	os.RemoveAll(c.nodes[2].DataDir)
	d := startDaemon(t, c.nodes[2].DataDir, c.configs[2], "--listen", strings.TrimPrefix(c.urls[2], "http://"))
	c.nodes[2] = d
	eventually(t, time.Minute, "the restarted node serves core.db", func() bool {
		code, body, _ := d.get("/archlinux/core/os/x86_64/core.db")
		return code == 200 && bytes.Equal(body, files["core.db"])
	})
	for f, want := range files {
		if code, body, _ := d.get("/archlinux/core/os/x86_64/" + f); code != 200 || !bytes.Equal(body, want) {
			t.Errorf("restarted node: %s = %d, %d bytes; want the upstream's %d", f, code, len(body), len(want))
		}
	}
	eventually(t, time.Minute, "the restarted node's sync done", func() bool {
		return strings.Contains(d.Log(), `msg="sync done"`)
	})
	if n := up.Total() - before; n != 0 {
		t.Errorf("upstream was asked %d times for a node restarted on an empty disk; want 0", n)
		if log := up.Log(); before < len(log) {
			for _, e := range log[before:] {
				t.Log(e)
			}
		}
	}
}

// freeAddr is a free port on a random loopback address other than
// 127.0.0.1 (127.0.0.0/8 is all loopback on Linux), as host:port.
func freeAddr(t *testing.T) string {
	t.Helper()
	var b [2]byte
	rand.Read(b[:])
	ip := fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 2+b[0]%200)
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
