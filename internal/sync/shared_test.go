package sync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/fsobj"
)

// nodes is two envs over one upstream and one bucket (a filesystem tree
// standing in for S3), as two nodes of a cluster.
func nodes(t *testing.T, up *faultserver.Server) (a, b *env, bucket *fsobj.Tree, bucketDir string) {
	t.Helper()
	bucketDir = t.TempDir()
	bucket, err := fsobj.Open(bucketDir, fsobj.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return node(t, up, bucket), node(t, up, bucket), bucket, bucketDir
}

// node is an env of its own over up and bucket: one node of a cluster.
func node(t *testing.T, up *faultserver.Server, bucket Bucket) *env {
	t.Helper()
	e := &env{t: t, cfg: archConfig(t, up), clock: &clock{t: time.Unix(1_800_000_000, 0)}, bucket: bucket}
	e.dataDir = e.cfg.DataDir
	e.open()
	return e
}

// followSync is a scheduled sync of core, which may follow the bucket.
func followSync(t *testing.T, e *env) {
	t.Helper()
	if err := e.sched.syncRepo(t.Context(), e.sched.repos["archlinux/core"], true); err != nil {
		t.Fatalf("sync = %v", err)
	}
}

const coreDB = "archlinux/" + archDir + "/core.db"

// readManifestFile is core's manifest in the bucket.
func readManifestFile(t *testing.T, bucketDir string) manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(bucketDir, "tree", sharedManifest+"archlinux/core"))
	if err != nil {
		t.Fatalf("no manifest: %v", err)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A sync that asked upstream leaves its dbs and a manifest in the bucket;
// a scheduled sync of another node within sync_interval takes them from
// there, so both serve the same db and upstream is asked once; the
// bucket's tree holds the db too. A sync asked for (Sync) asks upstream.
func TestFollowsTheBucket(t *testing.T) {
	up, u := coreUpstream(t, true, "alpha", "beta")
	os.WriteFile(filepath.Join(up.Root(), archDir, "core.db.sig"), []byte("signature of core.db"), 0o644)
	a, b, _, bucketDir := nodes(t, up)
	mustSync(t, a)
	m := readManifestFile(t, bucketDir)
	if m.LastUpdate != "1000" || len(m.Files) != 3 {
		t.Fatalf("manifest = %+v; want lastupdate 1000, the db, its signature and the files db", m)
	}
	want, _ := os.ReadFile(filepath.Join(up.Root(), archDir, "core.db"))
	if got, _ := os.ReadFile(filepath.Join(bucketDir, "tree", coreDB)); !bytes.Equal(got, want) {
		t.Errorf("the bucket's tree has a core.db of %d bytes; want upstream's %d", len(got), len(want))
	}

	followSync(t, b)
	if n := up.Requests("/" + archDir + "/core.db"); n != 1 {
		t.Errorf("upstream served core.db %d times to two nodes; want 1", n)
	}
	if got, _ := os.ReadFile(filepath.Join(b.tree(), coreDB)); !bytes.Equal(got, want) {
		t.Errorf("the follower's core.db is %d bytes; want upstream's %d", len(got), len(want))
	}
	sameTree(t, listFiles(t, filepath.Join(b.tree(), "archlinux", archDir), nil), listFiles(t, filepath.Join(up.Root(), archDir), nil))
	if st := b.sched.States()[0]; st.LastUpdate != "1000" || st.LastError != "" {
		t.Errorf("follower's state = %+v; want lastupdate 1000, no error", st)
	}

	// Past sync_interval, a scheduled sync asks upstream again; so does
	// one asked for at once.
	u.add("gamma", "1.0-1", 3000)
	u.write()
	setLastupdate(t, up.Root(), 2000)
	b.clock.Add(DefaultInterval)
	followSync(t, b)
	if n := up.Requests("/" + archDir + "/core.db"); n != 2 {
		t.Errorf("upstream served core.db %d times; want 2 (the manifest was older than sync_interval)", n)
	}
	if m := readManifestFile(t, bucketDir); m.LastUpdate != "2000" {
		t.Errorf("manifest lastupdate = %q after the follower asked upstream; want 2000", m.LastUpdate)
	}
	mustSync(t, a)
	if n := up.Requests("/" + archDir + "/core.db"); n != 3 {
		t.Errorf("upstream served core.db %d times; want 3 (Sync asks upstream)", n)
	}

	// A db upstream no longer signs: the bucket's tree loses its old
	// signature with it.
	os.Remove(filepath.Join(up.Root(), archDir, "core.db.sig"))
	u.add("delta", "1.0-1", 3000)
	u.write()
	setLastupdate(t, up.Root(), 3000)
	mustSync(t, a)
	if _, err := os.Stat(filepath.Join(bucketDir, "tree", coreDB+".sig")); !os.IsNotExist(err) {
		t.Errorf("the bucket's tree keeps core.db.sig of an older db (%v); want it removed", err)
	}
}

// What the bucket holds is checked: a shared db whose bytes are not what
// the manifest says, or a manifest naming a file outside the repo, is
// never published; the sync asks upstream instead.
func TestBadBucketFallsBackToUpstream(t *testing.T) {
	up, _ := coreUpstream(t, false, "alpha")
	a, b, _, bucketDir := nodes(t, up)
	mustSync(t, a)
	m := readManifestFile(t, bucketDir)
	obj := filepath.Join(bucketDir, "tree", sharedObjects+"archlinux/core/"+m.Files[coreDB].SHA256)
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	os.WriteFile(obj, data, 0o644)
	followSync(t, b)
	want, _ := os.ReadFile(filepath.Join(up.Root(), archDir, "core.db"))
	if got, _ := os.ReadFile(filepath.Join(b.tree(), coreDB)); !bytes.Equal(got, want) {
		t.Errorf("core.db after a bad shared copy: %d bytes; want upstream's %d", len(got), len(want))
	}
	if n := up.Requests("/" + archDir + "/core.db"); n != 2 {
		t.Errorf("upstream served core.db %d times; want 2 (the follower asked it after the bad copy)", n)
	}

	// A manifest naming a path outside the repo is not one.
	m = readManifestFile(t, bucketDir)
	m.Files["archlinux/extra/os/x86_64/extra.db"] = m.Files[coreDB]
	data, _ = json.Marshal(m)
	os.WriteFile(filepath.Join(bucketDir, "tree", sharedManifest+"archlinux/core"), data, 0o644)
	if got := b.sched.followable(t.Context(), b.sched.repos["archlinux/core"]); got != nil {
		t.Errorf("followable = %+v for a manifest naming another repo's db; want nil", got)
	}
	// Nor one with a lastupdate no upstream gives, or dated ahead (to
	// stay fresh).
	for _, bad := range []func(m *manifest){
		func(m *manifest) { m.LastUpdate = "1000; rm" },
		func(m *manifest) { m.SyncedAt = b.clock.Now().Add(time.Hour) },
	} {
		m := readManifestFile(t, bucketDir)
		delete(m.Files, "archlinux/extra/os/x86_64/extra.db")
		bad(&m)
		data, _ = json.Marshal(m)
		os.WriteFile(filepath.Join(bucketDir, "tree", sharedManifest+"archlinux/core"), data, 0o644)
		if got := b.sched.followable(t.Context(), b.sched.repos["archlinux/core"]); got != nil {
			t.Errorf("followable = %+v; want nil", got)
		}
	}
}

// Each manifest keeps the files of the one before it (a node may be
// reading them) and deletes those of the one before that.
func TestSharedDBsAreCollected(t *testing.T) {
	up, u := coreUpstream(t, false, "alpha")
	a, _, bucket, bucketDir := nodes(t, up)
	var firsts []string
	for i, name := range []string{"beta", "gamma", "delta"} {
		mustSync(t, a)
		firsts = append(firsts, readManifestFile(t, bucketDir).Files[coreDB].SHA256)
		u.add(name, "1.0-1", 2000)
		u.write()
		setLastupdate(t, up.Root(), int64(2000+i))
	}
	keys, err := bucket.List(t.Context(), sharedObjects)
	if err != nil {
		t.Fatal(err)
	}
	has := func(sum string) bool {
		for _, k := range keys {
			if strings.HasSuffix(k, sum) {
				return true
			}
		}
		return false
	}
	if has(firsts[0]) || !has(firsts[1]) || !has(firsts[2]) {
		t.Errorf("shared dbs after three states: %v; want the first state's core.db (%s) gone, the last two kept", keys, firsts[0])
	}
	if _, err := bucket.Stat(t.Context(), sharedManifest+"archlinux/core"); err != nil {
		t.Errorf("manifest: %v", err)
	}
}

// countingBucket counts the Puts that reach a bucket.
type countingBucket struct {
	Bucket
	puts   atomic.Int64
	before func() // if set, runs once before the next PutIfMatch
}

func (b *countingBucket) Put(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error {
	b.puts.Add(1)
	return b.Bucket.Put(ctx, key, r, meta)
}

func (b *countingBucket) PutIfAbsent(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error {
	b.puts.Add(1)
	return b.Bucket.PutIfAbsent(ctx, key, r, meta)
}

func (b *countingBucket) PutIfMatch(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, version string) (string, error) {
	b.puts.Add(1)
	if b.before != nil {
		b.before()
		b.before = nil
	}
	return b.Bucket.PutIfMatch(ctx, key, r, meta, version)
}

// A sync that finds upstream unchanged puts nothing into the bucket but
// the manifest, which says when it asked.
func TestUnchangedSyncUploadsOnlyTheManifest(t *testing.T) {
	up, _ := coreUpstream(t, false, "alpha")
	tree, err := fsobj.Open(t.TempDir(), fsobj.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bucket := &countingBucket{Bucket: tree}
	e := node(t, up, bucket)
	mustSync(t, e)
	first := bucket.puts.Load()
	if first != 5 { // core.db and core.files, each under its sha256 and at its path, and the manifest
		t.Errorf("first sync: %d puts; want 5", first)
	}
	e.clock.Add(time.Minute)
	mustSync(t, e)
	if n := bucket.puts.Load() - first; n != 1 {
		t.Errorf("unchanged sync: %d puts; want 1 (the manifest)", n)
	}
}

// A node that lost its turn (paused past its lease) does not put its
// manifest over one written meanwhile.
func TestStaleManifestIsNotPutBack(t *testing.T) {
	up, _ := coreUpstream(t, false, "alpha")
	dir := t.TempDir()
	tree, err := fsobj.Open(dir, fsobj.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bucket := &countingBucket{Bucket: tree}
	e := node(t, up, bucket)
	mustSync(t, e)
	newer := readManifestFile(t, dir)
	newer.LastUpdate = "9999"
	data, _ := json.Marshal(newer)
	bucket.before = func() {
		if err := tree.Put(t.Context(), sharedManifest+"archlinux/core", bytes.NewReader(data), store.BytesMeta(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tree.Delete(t.Context(), coreDB); err != nil {
		t.Fatal(err)
	}
	err = e.sched.share(t.Context(), e.sched.repos["archlinux/core"], "1000")
	if !errors.Is(err, store.ErrVersionMismatch) {
		t.Errorf("share over a manifest written meanwhile = %v; want ErrVersionMismatch", err)
	}
	if _, err := tree.Stat(t.Context(), coreDB); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the bucket's tree copy of core.db after a refused share: %v; want none written", err)
	}
	if got := readManifestFile(t, dir); got.LastUpdate != "9999" {
		t.Errorf("manifest lastupdate = %q; want the newer 9999 kept", got.LastUpdate)
	}
}

// followerOfGamma is two nodes over an unsigned core of alpha and gamma:
// a has synced from upstream, and b's fetches of gamma from upstream get
// fault.
func followerOfGamma(t *testing.T, fault faultserver.Fault) (up *faultserver.Server, u *upRepo, gamma string, b *env) {
	t.Helper()
	up, u = coreUpstream(t, false, "alpha")
	gamma = u.add("gamma", "1.0-1", 3000)
	u.write()
	a, b, _, _ := nodes(t, up)
	mustSync(t, a)
	up.SetFault("/"+archDir+"/"+gamma, fault)
	return up, u, gamma, b
}

// A follower publishes the manifest's dbs before it copies their
// packages (the bucket has them, and a miss is filled from there): a node
// with an empty disk serves the cluster's state at once. Upstream signs
// no package: the leader's probes found out, and the manifest tells the
// follower, which asks for no signature.
func TestFollowerPublishesBeforeCopying(t *testing.T) {
	gate := make(chan struct{})
	up, u, gamma, b := followerOfGamma(t, faultserver.Fault{Gate: gate})
	done := make(chan error, 1)
	go func() { done <- b.sched.syncRepo(t.Context(), b.sched.repos["archlinux/core"], true) }()
	select {
	case <-up.Seen("/"+archDir+"/"+gamma, 2): // a's fetch, then b's, held
	case err := <-done:
		close(gate)
		t.Fatalf("follower's sync ended (%v) before fetching %s", err, gamma)
	}
	want, _ := os.ReadFile(filepath.Join(up.Root(), archDir, "core.db"))
	got, _ := os.ReadFile(filepath.Join(b.tree(), coreDB))
	close(gate)
	if !bytes.Equal(got, want) {
		t.Errorf("while its packages copy, the follower's core.db is %d bytes; want the manifest's %d", len(got), len(want))
	}
	if err := <-done; err != nil {
		t.Fatalf("follower's sync = %v", err)
	}
	sameTree(t, listFiles(t, filepath.Join(b.tree(), "archlinux", archDir), nil), listFiles(t, filepath.Join(up.Root(), archDir), nil))
	for _, p := range u.pkgs {
		if n := up.Requests("/" + archDir + "/" + p.Filename + ".sig"); n != 1 {
			t.Errorf("upstream was asked for %s.sig %d times; want 1 (the leader's probe)", p.Filename, n)
		}
	}
}

// A follower whose copy of the packages fails after it published the db
// reports the sync failed, and the next sync, which finds the db
// current, finishes the copy.
func TestFailedCopyIsFinished(t *testing.T) {
	up, _, gamma, b := followerOfGamma(t, faultserver.Fault{Status: 404})
	err := b.sched.syncRepo(t.Context(), b.sched.repos["archlinux/core"], true)
	if err == nil {
		t.Fatal("follower's sync succeeded with a package missing")
	}
	if _, err := os.Stat(filepath.Join(b.tree(), coreDB)); err != nil {
		t.Fatalf("the follower did not publish the db before copying: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.tree(), "archlinux", archDir, gamma)); err == nil {
		t.Fatalf("%s copied through a 404", gamma)
	}
	up.ClearFaults()
	followSync(t, b)
	// The failed sync asked upstream in the same turn, which found the
	// db current (304) and failed on the same package; upstream never
	// sent the db but to a.
	sent := 0
	for _, e := range up.Log() {
		if e.Path == "/"+archDir+"/core.db" && e.Status == 200 {
			sent++
		}
	}
	if sent != 1 {
		t.Errorf("upstream sent core.db %d times; want 1 (to the first node only)", sent)
	}
	sameTree(t, listFiles(t, filepath.Join(b.tree(), "archlinux", archDir), nil), listFiles(t, filepath.Join(up.Root(), archDir), nil))
	if st := b.sched.States()[0]; st.LastError != "" {
		t.Errorf("follower's state = %+v; want no error", st)
	}
	// Copied: the next sync has nothing left to do.
	before := up.Total()
	followSync(t, b)
	if n := up.Total() - before; n != 0 {
		t.Errorf("a sync after the copy asked upstream %d times; want 0", n)
	}
}

// A node never follows a manifest of its own that it serves: its next
// scheduled sync asks upstream, so that upstream is asked about once per
// sync_interval, not every other one.
func TestOwnManifestIsNotFollowed(t *testing.T) {
	up, _ := coreUpstream(t, false, "alpha")
	a, b, _, _ := nodes(t, up)
	mustSync(t, a)
	a.clock.Add(DefaultInterval * 9 / 10) // a's next timer, at -10 %
	followSync(t, a)
	if n := up.Requests("/lastupdate"); n != 2 {
		t.Errorf("upstream was asked for lastupdate %d times by one node's two syncs; want 2", n)
	}
	// Another node's, it follows.
	b.clock.Add(DefaultInterval * 9 / 10)
	followSync(t, b)
	if n := up.Requests("/lastupdate"); n != 2 {
		t.Errorf("upstream was asked for lastupdate %d times; want still 2 (b follows a's manifest)", n)
	}
}
