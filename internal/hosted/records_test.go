package hosted

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/s3test"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/fsobj"
	"github.com/mirrord/mirrord/internal/store/s3obj"
)

// TestRecords runs one contract against every place the publish state
// can be kept: the store's key-value API, and bucketRecords over a
// filesystem bucket and over a real SeaweedFS (and the tests' map).
func TestRecords(t *testing.T) {
	t.Run("store", func(t *testing.T) {
		st, err := store.Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		testRecords(t, st)
	})
	t.Run("fs", func(t *testing.T) {
		testRecords(t, fsRecords(t))
	})
	t.Run("map", func(t *testing.T) { // the test double of TestForeignRecordsStayInTheRepo
		testRecords(t, &mapRecords{m: map[string][]byte{}})
	})
	t.Run("s3", func(t *testing.T) {
		srv := s3test.Start(t)
		b, err := s3obj.New(s3obj.Options{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Region: "us-east-1",
			PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		rec := bucketRecords{objs: b, prefix: "_mirrord/hosted/"}
		testRecords(t, rec)
		// A record no node wrote, too large to be one, is refused
		// without being read whole.
		big := bytes.Repeat([]byte("x"), maxRecord+1)
		if err := rec.Put("job/huge", big); err != nil {
			t.Fatal(err)
		}
		if _, err := rec.Get("job/huge"); err == nil || !strings.Contains(err.Error(), "over") {
			t.Errorf("Get of a %d-byte record = %v; want refused", len(big), err)
		}
	})
}

// fsRecords is bucketRecords over a filesystem bucket in a temp dir.
func fsRecords(t *testing.T) bucketRecords {
	t.Helper()
	return bucketRecords{objs: fsBucket(t), prefix: bucketPrefix}
}

// fsBucket is a filesystem bucket in a temp dir.
func fsBucket(t *testing.T) *fsobj.Tree {
	t.Helper()
	b, err := fsobj.Open(t.TempDir(), fsobj.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testRecords(t *testing.T, rec records) {
	if _, err := rec.Get("job/none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of a missing key = %v; want store.ErrNotFound", err)
	}
	if err := rec.Delete("job/none"); err != nil {
		t.Errorf("Delete of a missing key = %v; want nil", err)
	}
	put := func(key, val string) {
		t.Helper()
		if err := rec.Put(key, []byte(val)); err != nil {
			t.Fatalf("Put(%s) = %v", key, err)
		}
	}
	put("job/2", "b")
	put("job/1", "a")
	put("job/3", "old")
	put("job/3", "c") // replaced whole
	put("jobs", "not a job")
	put("hosted/idx/archlinux/local/x86_64/foo", "foo's entry")
	if v, err := rec.Get("job/3"); err != nil || string(v) != "c" {
		t.Errorf("Get(job/3) = %q, %v; want the last Put, c", v, err)
	}
	scan := func(prefix string) []string {
		t.Helper()
		var got []string
		if err := rec.Scan(prefix, func(k string, v []byte) error { got = append(got, k+"="+string(v)); return nil }); err != nil {
			t.Fatalf("Scan(%s) = %v", prefix, err)
		}
		return got
	}
	if got, want := scan("job/"), []string{"1=a", "2=b", "3=c"}; !slices.Equal(got, want) {
		t.Errorf("Scan(job/) = %v; want %v (byte order, prefix stripped, nothing else)", got, want)
	}
	if got, want := scan("hosted/idx/"), []string{"archlinux/local/x86_64/foo=foo's entry"}; !slices.Equal(got, want) {
		t.Errorf("Scan(hosted/idx/) = %v; want %v", got, want)
	}
	if err := rec.Delete("job/2"); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Get("job/2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v; want store.ErrNotFound", err)
	}
	stop := errors.New("stop")
	n := 0
	err := rec.Scan("job/", func(string, []byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Scan whose fn fails = %v after %d calls; want fn's error after 1", err, n)
	}
}

// The publish state kept in a bucket instead of a node's store: a second
// node over the same bucket, with a tree of its own, finds the first
// one's index and jobs, builds the same db from them, and refuses an
// upload that is not newer than what the first one published.
func TestRecordsInTheBucket(t *testing.T) {
	bucket := fsBucket(t)
	cfg := testConfig()
	a := newEnvOpts(t, "", cfg, true, Options{Bucket: bucket})
	var ids []string
	for i := range 3 {
		j, err := a.submit("local", pkg(t, fmt.Sprintf("b%d", i), "1-1", "x86_64"), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		if j := a.wait(id); j.Status != Done {
			t.Fatalf("job %s = %s %s", id, j.Status, j.Error)
		}
	}
	a.idle()
	want := a.db("x86_64", "local.db")
	for _, prefix := range []string{"hosted/", jobPrefix} {
		n := 0
		if err := a.st.Scan(prefix, func(string, []byte) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("the first node's own store holds %d records under %s (%v); want none (they are the bucket's)", n, prefix, err)
		}
	}
	a.stop()

	b := newEnvOpts(t, "", cfg, true, Options{Bucket: bucket})
	b.idle()
	got := b.db("x86_64", "local.db")
	if len(got) != len(want) {
		t.Fatalf("the second node's db lists %d packages; want the first's %d", len(got), len(want))
	}
	for name, p := range want {
		if q := got[name]; q == nil || q.Version != p.Version || q.SHA256Sum != p.SHA256Sum {
			t.Errorf("the second node's db has %s as %+v; want %s %s", name, q, p.Version, p.SHA256Sum)
		}
	}
	for _, id := range ids {
		if j, err := b.svc.Job(id); err != nil || j.Status != Done || j.PublishedAt == nil {
			t.Errorf("job %s on the second node = %+v, %v; want done and published", id, j, err)
		}
	}
	j, err := b.submit("local", pkg(t, "b0", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if j := b.wait(j.ID); j.Result != ResultRefused {
		t.Errorf("b0 1-1 again on the second node = %s %s; want refused as not newer", j.Result, j.Error)
	}
}

// Records that no publish could have written (the bucket may be written
// by others) never make a node touch the tree outside the repo: a
// retired file or an index entry whose name climbs out of the folder is
// dropped at load.
func TestForeignRecordsStayInTheRepo(t *testing.T) {
	// In memory: S3 takes keys with ".." that a filesystem bucket refuses.
	rec := &mapRecords{m: map[string][]byte{}}
	victim := "archlinux/core/os/x86_64/victim.pkg.tar.zst"
	climb := "../../../core/os/x86_64/victim.pkg.tar.zst"
	past, _ := time.Unix(1, 0).MarshalText()
	if err := rec.Put(gcPrefix+"archlinux/local/x86_64/"+climb, past); err != nil {
		t.Fatal(err)
	}
	evil, _ := json.Marshal(entry{Package: alpm.Package{Name: "evil", Version: "1-1", Arch: "x86_64", Filename: climb}})
	if err := rec.Put(idxPrefix+"archlinux/local/x86_64/evil", evil); err != nil {
		t.Fatal(err)
	}
	e := newEnvOpts(t, "", testConfig(), true, Options{records: rec})
	if err := e.st.WriteFile(victim, []byte("another repo's package"), store.Meta{}); err != nil {
		t.Fatal(err)
	}
	// A publish: its build's end sweeps the retired files.
	j, err := e.submit("local", pkg(t, "good", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if j := e.wait(j.ID); j.Status != Done {
		t.Fatalf("job = %s %s", j.Status, j.Error)
	}
	e.idle()
	if _, err := e.st.Stat(victim); err != nil {
		t.Errorf("%s, outside the hosted repo, after a sweep: %v; want it kept", victim, err)
	}
	if db := e.db("x86_64", "local.db"); db["evil"] != nil || db["good"] == nil {
		t.Errorf("db lists %v; want good and not the entry with a climbing file name", slices.Sorted(maps.Keys(db)))
	}
}

// mapRecords is records in a map: what any client of a bucket may have
// put there, keys with ".." included.
type mapRecords struct {
	mu stdsync.Mutex
	m  map[string][]byte
}

func (r *mapRecords) Get(key string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (r *mapRecords) Put(key string, val []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[key] = slices.Clone(val)
	return nil
}

func (r *mapRecords) Delete(key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, key)
	return nil
}

func (r *mapRecords) Scan(prefix string, fn func(key string, val []byte) error) error {
	r.mu.Lock()
	keys := slices.Sorted(maps.Keys(r.m))
	r.mu.Unlock()
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		v, err := r.Get(k)
		if err != nil {
			continue
		}
		if err := fn(strings.TrimPrefix(k, prefix), v); err != nil {
			return err
		}
	}
	return nil
}

// An upload acknowledged by a node that never ran its job (it died just
// after the 202) is published by the next node over the same bucket,
// which has none of the first one's disk: the upload's bytes come from
// the bucket, the package goes there at its tree path before the db
// names it, and the staged copy leaves once the job is over.
func TestAcknowledgedUploadSurvivesTheNode(t *testing.T) {
	bucket := fsBucket(t)
	cfg := testConfig()
	a := newEnvOpts(t, "", cfg, false, Options{Bucket: bucket}) // accepts, never runs a job
	data := pkg(t, "survivor", "1-1", "x86_64")
	j, err := a.submit("local", data, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	staged := bucketStaging + stagedName(j.ID, ".pkg")
	if _, err := bucket.Stat(context.Background(), staged); err != nil {
		t.Fatalf("the acknowledged upload is not in the bucket: %v", err)
	}
	a.stop()
	if err := os.RemoveAll(a.dir); err != nil {
		t.Fatal(err)
	}

	rb := &recordingBucket{Bucket: bucket}
	b := newEnvOpts(t, "", cfg, true, Options{Bucket: rb})
	if got := b.wait(j.ID); got.Status != Done || got.PublishedAt == nil {
		t.Fatalf("job %s on the next node = %s %s, published %v; want done and published", j.ID, got.Status, got.Error, got.PublishedAt)
	}
	if p := b.db("x86_64", "local.db")["survivor"]; p == nil || p.Version != "1-1" {
		t.Fatalf("the next node's db has survivor as %+v; want 1-1", p)
	}
	rel := "archlinux/local/os/x86_64/" + b.db("x86_64", "local.db")["survivor"].Filename
	body, meta, err := bucket.Get(context.Background(), rel)
	if err != nil {
		t.Fatalf("the published package is not in the bucket's tree: %v", err)
	}
	got, _ := io.ReadAll(body)
	body.Close()
	if !bytes.Equal(got, data) || meta.SHA256 == "" {
		t.Errorf("the bucket's %s: %d bytes, sha256 %q; want the upload's %d bytes, with its sha256", rel, len(got), meta.SHA256, len(data))
	}
	if slices.Contains(rb.putKeys(), rel) {
		t.Errorf("%s was uploaded to the bucket again; want it copied from the staged upload there", rel)
	}
	if _, err := bucket.Stat(context.Background(), staged); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the finished job's upload is still in the bucket (%v)", err)
	}
}

// The databases a publisher builds are followed into another node's
// tree, whole and as a pair with their signatures' absence or presence;
// a publisher with an earlier lease token (one paused past its lease)
// cannot put back its older state.
func TestFollowerTakesTheSharedDatabases(t *testing.T) {
	bucket := fsBucket(t)
	cfg := testConfig()
	a := newEnvOpts(t, "", cfg, true, Options{Bucket: bucket, Token: 2})
	j, err := a.submit("local", pkg(t, "first", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	a.wait(j.ID)
	a.idle()

	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cat := testCatalog(t, cfg, st)
	f := NewFollower(cat, st, bucket, nil)
	follow := func() map[string]*alpm.Package {
		t.Helper()
		if err := f.Follow(context.Background()); err != nil {
			t.Fatal(err)
		}
		b := &env{t: t, st: st}
		return b.db("x86_64", "local.db")
	}
	if got := follow(); got["first"] == nil || len(got) != 1 {
		t.Fatalf("the follower's db = %v; want first alone", slices.Collect(maps.Keys(got)))
	}
	for _, name := range []string{"local.db", "local.files"} {
		want, _ := a.st.Stat("archlinux/local/os/x86_64/" + name + ".tar.gz")
		got, err := st.Stat("archlinux/local/os/x86_64/" + name + ".tar.gz")
		if err != nil || got.SHA256 != want.SHA256 || !got.LastModified.Equal(want.LastModified) {
			t.Errorf("the follower's %s = %+v, %v; want the publisher's sha256 %s and date %v", name, got, err, want.SHA256, want.LastModified)
		}
	}
	if _, err := st.Lstat("archlinux/local/os/aarch64/local.db"); err != nil {
		t.Errorf("the follower has no aarch64 db: %v", err)
	}

	j, err = a.submit("local", pkg(t, "second", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	a.wait(j.ID)
	a.idle()
	if got := follow(); got["second"] == nil || len(got) != 2 {
		t.Fatalf("after a second publish the follower's db = %v; want first and second", slices.Collect(maps.Keys(got)))
	}
	a.stop()

	// A publisher of token 1 over another tree builds a db of its own
	// (without "second"): the manifest keeps the later token's.
	stale := newEnvOpts(t, "", cfg, false, Options{records: &mapRecords{m: map[string][]byte{}}, Token: 1})
	stale.svc.bucket = bucket // shares, but its records are its own
	if err := stale.svc.shareDB("archlinux/local/os/x86_64", "local"); !errors.Is(err, errFenced) {
		t.Errorf("a share of token 1 over token 2's = %v; want errFenced", err)
	}
	f.Forget()
	if got := follow(); len(got) != 2 {
		t.Errorf("after the stale share the follower's db lists %d packages; want 2", len(got))
	}
}

// A publisher whose hold on the lease ends (paused past it, or the lease
// lost) writes nothing more to the bucket, even in the middle of a job:
// the next holder has read the records by then, and a late write would
// land over its work. Its uploads are refused as busy, and the job it
// was running is left for the next holder, which publishes it.
func TestNothingWrittenOnceTheHoldEnds(t *testing.T) {
	bucket := fsBucket(t)
	cfg := testConfig()
	a := newEnvOpts(t, "", cfg, false, Options{Bucket: bucket}) // accepts, never runs a job
	j, err := a.submit("local", pkg(t, "late", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	a.stop()
	if err := os.RemoveAll(a.dir); err != nil {
		t.Fatal(err)
	}

	// b's Checker checks the job; b's read of the upload, to commit it,
	// is held until the hold has ended: a publisher paused in the middle
	// of a job.
	gate := &gatedBucket{Bucket: bucket, entered: make(chan struct{}), release: make(chan struct{})}
	hold, end := context.WithCancelCause(context.Background())
	b := newEnvOpts(t, "", cfg, true, Options{Bucket: gate, Hold: hold, checkerBucket: bucket})
	select {
	case <-gate.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the job's upload was not read from the bucket within 30s")
	}
	b.settled() // the builds of the takeover are over: nothing else writes
	end(errors.New("lease lost"))
	before := objects(t, bucket)

	if _, err := b.submit("local", pkg(t, "refused", "1-1", "x86_64"), nil, false); !errors.Is(err, ErrBusy) {
		t.Errorf("an upload once the hold ended = %v; want ErrBusy", err)
	}
	if err := b.svc.Delete(context.Background(), "archlinux", "local", "x86_64", "late"); err == nil {
		t.Error("a delete once the hold ended succeeded")
	}
	close(gate.release)
	b.stop() // the job runs to its end
	if after := objects(t, bucket); !maps.Equal(before, after) {
		for k, v := range after {
			if before[k] != v {
				t.Errorf("written to the bucket once the hold ended: %s", k)
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				t.Errorf("deleted from the bucket once the hold ended: %s", k)
			}
		}
	}

	c := newEnvOpts(t, "", cfg, true, Options{Bucket: bucket})
	if got := c.wait(j.ID); got.Status != Done || got.PublishedAt == nil {
		t.Fatalf("job %s on the next holder = %s %s; want done and published", j.ID, got.Status, got.Error)
	}
	if db := c.db("x86_64", "local.db"); db["late"] == nil || db["refused"] != nil {
		t.Errorf("the next holder's db lists %v; want late and not the refused upload", slices.Sorted(maps.Keys(db)))
	}
}

// gatedBucket holds the first read of a staged upload until release is
// closed, and closes entered when it begins.
type gatedBucket struct {
	Bucket
	once             stdsync.Once
	entered, release chan struct{}
}

func (g *gatedBucket) Get(ctx context.Context, key string) (io.ReadCloser, store.ObjectMeta, error) {
	if strings.HasPrefix(key, bucketStaging) {
		g.once.Do(func() { close(g.entered); <-g.release })
	}
	return g.Bucket.Get(ctx, key)
}

// objects is every object of the bucket with its version.
func objects(t *testing.T, b *fsobj.Tree) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := b.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, k := range keys {
		meta, err := b.Stat(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		m[k] = meta.Version
	}
	return m
}

// settled waits until no database of the service is dirty or building.
func (e *env) settled() {
	e.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		ch := e.svc.changed()
		n := int64(0)
		for _, r := range e.svc.repos {
			n += r.unsettled.Load()
		}
		if n == 0 {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			e.t.Fatal("databases still building after 30s")
		}
	}
}

// Reading jobs costs no request to the records once they are loaded: in
// a cluster each would be a GET to the bucket, and a client waiting on
// its job (mirrord publish --wait) reads it at every change.
func TestJobsReadFromMemory(t *testing.T) {
	rec := &countingRecords{mapRecords: mapRecords{m: map[string][]byte{}}}
	e := newEnvOpts(t, "", testConfig(), true, Options{records: rec})
	var ids []string
	for i := range 3 {
		j, err := e.submit("local", pkg(t, fmt.Sprintf("m%d", i), "1-1", "x86_64"), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		e.wait(id)
	}
	e.idle()
	before := rec.reads.Load()
	jobs, err := e.svc.Jobs("archlinux", "local", 10)
	if err != nil || len(jobs) != 3 || jobs[0].ID != ids[2] || jobs[2].ID != ids[0] {
		t.Errorf("Jobs = %d jobs, %v; want the 3, newest first", len(jobs), err)
	}
	if jobs, _ := e.svc.Jobs("archlinux", "local", 2); len(jobs) != 2 || jobs[0].ID != ids[2] {
		t.Errorf("Jobs with limit 2 = %d jobs; want the newest 2", len(jobs))
	}
	if jobs, _ := e.svc.Jobs("archlinux", "other", 10); len(jobs) != 0 {
		t.Errorf("Jobs of another repo = %d jobs; want none", len(jobs))
	}
	for _, id := range ids {
		if j, err := e.svc.Job(id); err != nil || j.Status != Done || j.PublishedAt == nil {
			t.Errorf("Job(%s) = %+v, %v; want done and published", id, j, err)
		}
	}
	if _, err := e.svc.Job("nonesuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Job of an unknown id = %v; want ErrNotFound", err)
	}
	if n := rec.reads.Load() - before; n != 0 {
		t.Errorf("reading jobs made %d reads of the records; want none", n)
	}
	// What is in memory is what is recorded: a node that loads the same
	// records finds the same jobs.
	e.stop()
	f := newEnvOpts(t, "", testConfig(), false, Options{records: rec})
	for _, id := range ids {
		if j, err := f.svc.Job(id); err != nil || j.Status != Done || j.PublishedAt == nil {
			t.Errorf("Job(%s) loaded again = %+v, %v; want done and published", id, j, err)
		}
	}
}

// countingRecords counts the reads (Get and Scan) of mapRecords.
type countingRecords struct {
	mapRecords
	reads atomic.Int64
}

func (r *countingRecords) Get(key string) ([]byte, error) {
	r.reads.Add(1)
	return r.mapRecords.Get(key)
}

func (r *countingRecords) Scan(prefix string, fn func(key string, val []byte) error) error {
	r.reads.Add(1)
	return r.mapRecords.Scan(prefix, fn)
}

// A staged upload whose job was never recorded (its node died between
// the two puts) leaves the bucket when the next node takes over; one of
// a pending job stays for it.
func TestOrphanUploadsLeaveTheBucket(t *testing.T) {
	bucket := fsBucket(t)
	cfg := testConfig()
	a := newEnvOpts(t, "", cfg, false, Options{Bucket: bucket}) // accepts, never runs a job
	j, err := a.submit("local", pkg(t, "pending", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	a.stop()
	orphan := bucketStaging + stagedName(newJobID(time.Now()), ".pkg")
	data := pkg(t, "orphan", "1-1", "x86_64")
	if err := bucket.Put(context.Background(), orphan, bytes.NewReader(data), store.BytesMeta(data)); err != nil {
		t.Fatal(err)
	}

	newEnvOpts(t, "", cfg, false, Options{Bucket: bucket})
	if _, err := bucket.Stat(context.Background(), orphan); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an upload without a job after the next node's load: %v; want deleted", err)
	}
	if _, err := bucket.Stat(context.Background(), bucketStaging+stagedName(j.ID, ".pkg")); err != nil {
		t.Errorf("the upload of a pending job after the next node's load: %v; want kept", err)
	}
}

// In a cluster a job is checked by whichever node's Checker claims it
// and committed by the publisher: here the publisher runs no Checker, and
// another node, with a tree of its own, checks every job, a refusal
// included. Each job's objects leave the bucket once it is over, and the
// checking node keeps none of the uploads it fetched.
func TestChecksOnAnotherNode(t *testing.T) {
	bucket := fsBucket(t)
	cfg := testConfig()
	a := newEnvOpts(t, "", cfg, false, Options{Bucket: bucket})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	b, err := NewChecker(testCatalog(t, cfg, st), st, "node-b", Options{Bucket: bucket, Registerer: reg, Checked: a.svc.Checked})
	if err != nil {
		t.Fatal(err)
	}
	bdone := make(chan struct{})
	go func() { b.Run(ctx); close(bdone) }()
	t.Cleanup(func() { cancel(); <-bdone })

	first, err := a.submit("local", pkg(t, "far", "2-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if j := a.wait(first.ID); j.Status != Done || j.PublishedAt == nil {
		t.Fatalf("job checked on another node = %s %s; want done and published", j.Status, j.Error)
	}
	older, err := a.submit("local", pkg(t, "far", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if j := a.wait(older.ID); j.Result != ResultRefused || !strings.Contains(j.Error, "not newer") {
		t.Errorf("an older version checked on another node = %s %q; want refused as not newer", j.Result, j.Error)
	}
	a.idle()
	if p := a.db("x86_64", "local.db")["far"]; p == nil || p.Version != "2-1" {
		t.Errorf("the publisher's db has far as %+v; want 2-1", p)
	}
	if n := testutil.ToFloat64(b.checks.WithLabelValues(ResultDone)); n != 1 {
		t.Errorf("node b checked %v jobs fine; want 1", n)
	}
	if n := testutil.ToFloat64(b.checks.WithLabelValues(ResultRefused)); n != 1 {
		t.Errorf("node b refused %v jobs; want 1", n)
	}
	for _, id := range []string{first.ID, older.ID} {
		for _, key := range jobObjects(id) {
			if _, err := bucket.Stat(context.Background(), key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s after its job: %v; want gone", key, err)
			}
		}
	}
	if left, err := st.ListStaged(); err != nil || len(left) != 0 {
		t.Errorf("node b's staging after its checks = %v, %v; want empty", left, err)
	}
}

// A claim is respected while it lasts and taken over once its holder let
// it expire: a node that died mid-check delays its job, no more.
func TestClaims(t *testing.T) {
	bucket := fsBucket(t)
	cfg := testConfig()
	a := newEnvOpts(t, "", cfg, false, Options{Bucket: bucket})
	j, err := a.submit("local", pkg(t, "claimed", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := NewChecker(testCatalog(t, cfg, st), st, "node-c", Options{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	putClaim := func(expires time.Time) {
		t.Helper()
		data, _ := json.Marshal(claim{Holder: "node-dead", Expires: expires})
		if err := bucket.Put(ctx, bucketClaims+j.ID, bytes.NewReader(data), store.BytesMeta(data)); err != nil {
			t.Fatal(err)
		}
	}
	putClaim(time.Now().Add(time.Minute))
	c.check(ctx, j.ID)
	if _, err := bucket.Stat(ctx, bucketChecked+j.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a job claimed by another node was checked here (%v)", err)
	}
	putClaim(time.Now().Add(-claimSkew - time.Second))
	c.check(ctx, j.ID)
	res, err := a.svc.readResult(j.ID)
	if err != nil || res.Result != ResultDone || res.Holder != "node-c" || res.Checked.Package.Name != "claimed" {
		t.Fatalf("after the claim expired the result is %+v, %v; want node-c's check of claimed", res, err)
	}
	body, _, err := bucket.Get(ctx, bucketClaims+j.ID)
	if err != nil {
		t.Fatal(err)
	}
	var cl claim
	json.NewDecoder(body).Decode(&cl)
	body.Close()
	if cl.Holder != "node-c" {
		t.Errorf("the claim after the takeover is %+v; want node-c's", cl)
	}
}

// recordingBucket notes the keys of its Puts.
type recordingBucket struct {
	Bucket
	mu   stdsync.Mutex
	puts []string
}

func (r *recordingBucket) Put(ctx context.Context, key string, body io.Reader, meta store.ObjectMeta) error {
	r.mu.Lock()
	r.puts = append(r.puts, key)
	r.mu.Unlock()
	return r.Bucket.Put(ctx, key, body, meta)
}

func (r *recordingBucket) putKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.puts)
}
