package prefetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	stdsync "sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/lockfree"
	"github.com/mirrord/mirrord/internal/proxy"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

const coreDir = "archlinux/core/os/x86_64" // the tree folder of the proxy repo

// env is a proxy repo "core", a mirror repo "mirrored" and a hosted repo
// "custom" over one fault-injecting upstream, with the store, catalog
// and fetcher that mirrord builds, and a Prefetcher over them.
type env struct {
	t       *testing.T
	up      *faultserver.Server
	st      *store.Store
	cat     *catalog.Catalog
	fetcher *fetch.Fetcher
	reg     *prometheus.Registry
	p       *Prefetcher
	runs    chan Run          // each run of p as it ends
	files   map[string][]byte // upstream's package files, by name
	dbTime  time.Time         // the mtime of the last db published upstream
}

func newEnv(t *testing.T, cache config.Cache) *env {
	t.Helper()
	if cache.DBMaxAge == 0 {
		cache.DBMaxAge = time.Nanosecond // every db request revalidates
	}
	if cache.PrefetchHorizon == 0 {
		cache.PrefetchHorizon = 336 * time.Hour
	}
	if cache.PrefetchConcurrency == 0 {
		cache.PrefetchConcurrency = 2
	}
	if cache.PrefetchMaxBytes == 0 {
		cache.PrefetchMaxBytes = 1 << 30
	}
	e := &env{t: t, up: faultserver.NewTest(t, t.TempDir()), reg: prometheus.NewRegistry(), runs: make(chan Run, 16),
		files: map[string][]byte{}, dbTime: time.Now().Add(-time.Hour).Truncate(time.Second)}
	dataDir := t.TempDir()
	cfg := &config.Config{
		DataDir: dataDir,
		Cache:   cache,
		Distros: map[string]config.Distro{
			"archlinux": {Layout: "$repo/os/$arch", Arch: []string{"x86_64"}, Upstreams: []string{e.up.URL() + "/$repo/os/$arch"},
				Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}, "mirrored": {Mode: config.ModeMirror},
					"custom": {Mode: config.ModeHosted}}},
		},
	}
	st, err := store.Open(dataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the Run of start, which registers later
	e.st = st
	up, err := upstream.NewClient(upstream.Options{StallTimeout: 30 * time.Second, Cooldown: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	if e.cat, err = catalog.New(cfg, st, catalog.Options{Upstream: up}); err != nil {
		t.Fatal(err)
	}
	e.fetcher = fetch.New(st, fetch.Options{Catalog: e.cat})
	t.Cleanup(func() { e.fetcher.Shutdown(context.Background()) })
	return e
}

// newPrefetcher builds the Prefetcher as main does, its runs reported on
// e.runs.
func (e *env) newPrefetcher() *Prefetcher {
	e.reg = prometheus.NewRegistry()
	e.p = New(e.cat, e.st, e.fetcher, Options{Registerer: e.reg})
	e.p.ran = func(r Run) { e.runs <- r }
	return e.p
}

// start runs e.p until the test ends.
func (e *env) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.p.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run = %v", err)
		}
	})
}

// publish writes upstream's repo folder: the packages (name, version,
// size) and a db naming them, newer than the last one.
func (e *env) publish(repo string, pkgs ...pkgSpec) {
	e.t.Helper()
	dir := filepath.Join(e.up.Root(), repo, "os", "x86_64")
	os.MkdirAll(dir, 0o755)
	var entries []*alpm.Package
	for _, s := range pkgs {
		file := s.name + "-" + s.version + "-x86_64.pkg.tar.zst"
		data, ok := e.files[file]
		if !ok {
			data = make([]byte, s.size)
			rand.Read(data)
			e.files[file] = data
			if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
				e.t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, file+".sig"), []byte("sig of "+file), 0o644)
		}
		sum := sha256.Sum256(data)
		entries = append(entries, &alpm.Package{Filename: file, Name: s.name, Base: s.name, Version: s.version,
			Arch: "x86_64", CSize: int64(len(data)), SHA256Sum: hex.EncodeToString(sum[:])})
		if s.noSize {
			entries[len(entries)-1].CSize = 0
		}
	}
	var buf bytes.Buffer
	if err := alpm.WriteDB(&buf, entries, alpm.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	db := filepath.Join(dir, repo+".db")
	if err := os.WriteFile(db, buf.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
	// A later mtime, so that revalidation (If-Modified-Since, to the
	// second) sees the new db.
	e.dbTime = e.dbTime.Add(time.Minute)
	os.Chtimes(db, e.dbTime, e.dbTime)
}

type pkgSpec struct {
	name, version string
	size          int
	noSize        bool // the db names no %CSIZE%
}

func pkgFile(name, version string) string { return name + "-" + version + "-x86_64.pkg.tar.zst" }

// refreshDB brings upstream's {repo}.db into the tree through a flight,
// as a proxy revalidation does.
func (e *env) refreshDB(repo string) {
	e.t.Helper()
	e.fetchFile(repo, repo+".db")
}

func (e *env) fetchFile(repo, file string) {
	e.t.Helper()
	tg, err := e.cat.Resolve("/archlinux/" + repo + "/os/x86_64/" + file)
	if err != nil {
		e.t.Fatal(err)
	}
	fl, rd, _ := e.fetcher.Join(context.Background(), fetch.JobFor(tg, e.cat.Mirrors(tg), time.Nanosecond))
	rd.Close()
	<-fl.Done()
	if err := fl.Err(); err != nil {
		e.t.Fatalf("fetch %s: %v", file, err)
	}
}

// request tells the Prefetcher that a client got file of repo.
func (e *env) request(repo, file string) {
	e.t.Helper()
	tg, err := e.cat.Resolve("/archlinux/" + repo + "/os/x86_64/" + file)
	if err != nil {
		e.t.Fatal(err)
	}
	e.p.Requested(tg)
}

// wait returns the next run that ends.
func (e *env) wait() Run {
	e.t.Helper()
	select {
	case r := <-e.runs:
		return r
	case <-time.After(30 * time.Second):
		e.t.Fatal("no prefetch run ended within 30s")
		return Run{}
	}
}

func (e *env) inTree(file string) bool {
	_, err := e.st.Stat(coreDir + "/" + file)
	return err == nil
}

func (e *env) upstreamRequests(repo, file string) int {
	return e.up.Requests("/" + repo + "/os/x86_64/" + file)
}

func (e *env) metric(name string) float64 {
	e.t.Helper()
	c := map[string]*prometheus.CounterVec{"files": e.p.metrics.files, "bytes": e.p.metrics.bytes,
		"skipped": e.p.metrics.skipped, "failures": e.p.metrics.failures, "runs": e.p.metrics.runs}[name]
	return testutil.ToFloat64(c.WithLabelValues("archlinux/core"))
}

// Clients fetch through the proxy; a new db brings in, before anyone asks,
// the newer version of what they got (and its .sig, which they asked for
// too), and nothing else: not names nobody asked for, not an unchanged
// version. The client that then asks gets a hit: upstream saw one request
// per file.
func TestPrefetchNewerVersions(t *testing.T) {
	e := newEnv(t, config.Cache{Prefetch: true, FillOnAbort: true})
	e.publish("core", pkgSpec{name: "a", version: "1.0-1", size: 30_000}, pkgSpec{name: "b", version: "1.0-1", size: 20_000},
		pkgSpec{name: "c", version: "1.0-1", size: 10_000})
	e.newPrefetcher()
	e.start()
	h, err := proxy.New(e.cat, e.st, proxy.Options{Fetcher: e.fetcher, Requests: e.p})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(file string) []byte {
		t.Helper()
		resp, err := http.Get(srv.URL + "/" + coreDir + "/" + file)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d, %v", file, resp.StatusCode, err)
		}
		return body
	}

	get("core.db")
	if r := e.wait(); r.Files != 0 {
		t.Errorf("run over the first db fetched %d files, want 0: nobody asked for anything yet", r.Files)
	}
	get(pkgFile("a", "1.0-1"))
	get(pkgFile("a", "1.0-1") + ".sig")
	get(pkgFile("b", "1.0-1"))

	e.publish("core", pkgSpec{name: "a", version: "1.1-1", size: 40_000}, pkgSpec{name: "b", version: "1.0-1"},
		pkgSpec{name: "c", version: "1.1-1", size: 10_000})
	get("core.db") // revalidated: the new db
	r := e.wait()
	a11 := pkgFile("a", "1.1-1")
	if r.Repo != "archlinux/core" || r.Arch != "x86_64" || r.Files != 2 || r.Bytes != int64(40_000+len("sig of "+a11)) ||
		r.Skipped != 0 || r.Failures != 0 || r.Finished.IsZero() {
		t.Errorf("run = %+v; want 2 files (a 1.1-1 and its .sig), %d bytes", r, 40_000+len("sig of "+a11))
	}
	if !e.inTree(a11) || !e.inTree(a11+".sig") {
		t.Errorf("a 1.1-1 or its .sig not in the tree after the run")
	}
	if e.inTree(pkgFile("c", "1.1-1")) {
		t.Error("c 1.1-1 prefetched, but nobody asked for c")
	}
	if e.inTree(pkgFile("b", "1.0-1")+".sig") || e.upstreamRequests("core", pkgFile("b", "1.0-1")) != 1 {
		t.Error("b, unchanged, was fetched again")
	}
	if got := get(a11); !bytes.Equal(got, e.files[a11]) {
		t.Errorf("GET a 1.1-1: %d bytes, not the file", len(got))
	}
	if n := e.upstreamRequests("core", a11); n != 1 {
		t.Errorf("upstream requests for %s = %d, want 1 (the prefetch's)", a11, n)
	}
	if e.metric("files") != 2 || e.metric("bytes") != float64(r.Bytes) || e.metric("runs") != 2 {
		t.Errorf("metrics files, bytes, runs = %v, %v, %v; want 2, %d, 2", e.metric("files"), e.metric("bytes"), e.metric("runs"), r.Bytes)
	}
	if runs := e.p.Runs(); len(runs) != 1 || runs[0] != r {
		t.Errorf("Runs() = %+v, want the last run only: %+v", runs, r)
	}
}

// A run fetches at most cache.prefetch_max_bytes, by the sizes the db
// names, the names asked for last first; the rest, and a package of no
// known size, is skipped and counted.
func TestPrefetchBudget(t *testing.T) {
	e := newEnv(t, config.Cache{Prefetch: true, FillOnAbort: true, PrefetchMaxBytes: 25_000})
	var old, next []pkgSpec
	for _, n := range []string{"a", "b", "c", "d"} {
		old = append(old, pkgSpec{name: n, version: "1-1", size: 100})
		next = append(next, pkgSpec{name: n, version: "2-1", size: 10_000})
	}
	next = append(next, pkgSpec{name: "e", version: "2-1", size: 100, noSize: true})
	old = append(old, pkgSpec{name: "e", version: "1-1", size: 100})
	e.publish("core", old...)
	e.refreshDB("core")
	e.newPrefetcher()
	clock := time.Now()
	e.p.now = func() time.Time { return clock }
	for _, n := range []string{"d", "a", "e", "c", "b"} { // b asked for last, then c, e, a, d
		e.request("core", pkgFile(n, "1-1"))
		clock = clock.Add(time.Second)
	}
	e.start()
	e.publish("core", next...)
	e.refreshDB("core")
	r := e.wait()
	if r.Files != 2 || r.Bytes != 20_000 || r.Skipped != 3 || r.Failures != 0 {
		t.Errorf("run = %+v; want 2 files, 20000 bytes, 3 skipped", r)
	}
	for n, want := range map[string]bool{"b": true, "c": true, "a": false, "d": false, "e": false} {
		if got := e.inTree(pkgFile(n, "2-1")); got != want {
			t.Errorf("%s 2-1 in the tree = %v, want %v", n, got, want)
		}
	}
	if got := e.metric("skipped"); got != 3 {
		t.Errorf("mirrord_prefetch_skipped_total = %v, want 3", got)
	}
}

// Only names asked for within cache.prefetch_horizon are prefetched, only
// when the db's version is newer (by vercmp) than the newest asked for,
// and the record of a name asked for before the horizon is dropped when
// saved.
func TestPrefetchHorizonAndVersions(t *testing.T) {
	e := newEnv(t, config.Cache{Prefetch: true, FillOnAbort: true, PrefetchHorizon: 14 * 24 * time.Hour})
	e.publish("core", pkgSpec{name: "old", version: "1-1", size: 100}, pkgSpec{name: "new", version: "1-1", size: 100})
	e.refreshDB("core")
	e.newPrefetcher()
	clock := time.Now()
	e.p.now = func() time.Time { return clock }
	e.request("core", pkgFile("old", "1-1"))
	clock = clock.Add(10 * 24 * time.Hour)
	e.request("core", pkgFile("new", "1-1"))
	e.request("core", pkgFile("epoch", "1:1.0-1")) // 1:1.0-1 is newer than 2.0-1
	e.request("core", pkgFile("ahead", "3.0-1"))   // a client has a newer one than the db
	e.request("core", pkgFile("ahead", "1.0-1"))   // and another an older one
	e.request("core", pkgFile("rel", "2.0-1"))     // 2.0-2 is newer than 2.0-1
	for name, want := range map[string]string{"epoch": "1:1.0-1", "ahead": "3.0-1", "rel": "2.0-1"} {
		if r := e.p.folders[0].names[name]; r == nil || r.Version != want {
			t.Fatalf("record of %s = %+v, want version %s", name, r, want)
		}
	}
	clock = clock.Add(5 * 24 * time.Hour) // old: 15 days ago; the others: 5
	e.start()
	e.publish("core", pkgSpec{name: "old", version: "2-1", size: 100}, pkgSpec{name: "new", version: "2-1", size: 100},
		pkgSpec{name: "epoch", version: "2.0-1", size: 100}, pkgSpec{name: "ahead", version: "2.0-1", size: 100},
		pkgSpec{name: "rel", version: "2.0-2", size: 100})
	e.refreshDB("core")
	r := e.wait()
	for file, want := range map[string]bool{pkgFile("new", "2-1"): true, pkgFile("rel", "2.0-2"): true,
		pkgFile("old", "2-1"): false, pkgFile("epoch", "2.0-1"): false, pkgFile("ahead", "2.0-1"): false} {
		if got := e.inTree(file); got != want {
			t.Errorf("%s in the tree = %v, want %v", file, got, want)
		}
	}
	if r.Files != 2 {
		t.Errorf("run = %+v, want 2 files", r)
	}
	e.p.save()
	val, err := e.st.Get(keyPrefix + coreDir)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(val, []byte(`"old"`)) || !bytes.Contains(val, []byte(`"new"`)) {
		t.Errorf("saved record = %s; want new and not old", val)
	}
}

// The record of what clients asked for survives a restart: a Prefetcher
// built over the same store prefetches what the last one recorded.
func TestPrefetchRecordSurvivesRestart(t *testing.T) {
	e := newEnv(t, config.Cache{Prefetch: true, FillOnAbort: true})
	e.publish("core", pkgSpec{name: "a", version: "1-1", size: 100})
	e.refreshDB("core")
	e.newPrefetcher()
	e.request("core", pkgFile("a", "1-1"))
	e.p.save()

	e.newPrefetcher() // as after a restart
	e.start()
	e.publish("core", pkgSpec{name: "a", version: "2-1", size: 100})
	e.refreshDB("core")
	if r := e.wait(); r.Files != 1 || !e.inTree(pkgFile("a", "2-1")) {
		t.Errorf("run after restart = %+v; want a 2-1 fetched", r)
	}
}

// With cache.prefetch off nothing is recorded and nothing runs; mirror
// and hosted repos are never recorded or prefetched.
func TestPrefetchOnlyWhenOnAndProxy(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		e := newEnv(t, config.Cache{FillOnAbort: true, Prefetch: false})
		e.publish("core", pkgSpec{name: "a", version: "1-1", size: 100})
		e.refreshDB("core")
		e.newPrefetcher()
		e.request("core", pkgFile("a", "1-1"))
		e.start() // returns at once
		e.publish("core", pkgSpec{name: "a", version: "2-1", size: 100})
		e.refreshDB("core")
		e.p.save()
		if _, err := e.st.Get(keyPrefix + coreDir); err == nil {
			t.Error("a record was saved with cache.prefetch off")
		}
		if len(e.p.folders) != 0 || len(e.p.Runs()) != 0 || e.inTree(pkgFile("a", "2-1")) {
			t.Errorf("with cache.prefetch off: %d folders watched, runs %+v, a 2-1 in the tree %v",
				len(e.p.folders), e.p.Runs(), e.inTree(pkgFile("a", "2-1")))
		}
	})
	t.Run("mirror and hosted", func(t *testing.T) {
		e := newEnv(t, config.Cache{FillOnAbort: true, Prefetch: true})
		e.publish("core", pkgSpec{name: "a", version: "1-1", size: 100})
		e.publish("mirrored", pkgSpec{name: "m", version: "1-1", size: 100})
		e.refreshDB("core")
		e.refreshDB("mirrored")
		e.newPrefetcher()
		e.start()
		for _, f := range e.p.folders {
			if f.repo.Key != "archlinux/core" {
				t.Errorf("folder %s of %s is watched; only proxy repos are", f.dir, f.repo.Key)
			}
		}
		e.fetchFile("mirrored", pkgFile("m", "1-1"))
		e.request("mirrored", pkgFile("m", "1-1"))
		e.request("custom", pkgFile("h", "1-1"))
		e.request("core", pkgFile("a", "1-1"))

		// The mirror repo's db changes first: had it a run, it would
		// end first.
		e.publish("mirrored", pkgSpec{name: "m", version: "2-1", size: 100})
		e.refreshDB("mirrored")
		e.publish("core", pkgSpec{name: "a", version: "2-1", size: 100})
		e.refreshDB("core")
		if r := e.wait(); r.Repo != "archlinux/core" || r.Files != 1 {
			t.Errorf("first run = %+v; want core's, with a 2-1", r)
		}
		if n := e.upstreamRequests("mirrored", pkgFile("m", "2-1")); n != 0 {
			t.Errorf("m 2-1 of the mirror repo was fetched %d times", n)
		}
		if runs := e.p.Runs(); len(runs) != 1 {
			t.Errorf("Runs() = %+v, want core's only", runs)
		}
		e.p.save()
		for _, dir := range []string{"archlinux/mirrored/os/x86_64", "archlinux/custom/os/x86_64"} {
			if _, err := e.st.Get(keyPrefix + dir); err == nil {
				t.Errorf("a request in %s was recorded", dir)
			}
		}
	})
}

// gatedFetcher starts each fill on a lockfree.Group as the Fetcher does,
// and holds it until the test opens its gate.
type gatedFetcher struct {
	g       lockfree.Group
	gates   map[string]chan struct{} // by tree path; set before the run
	mu      stdsync.Mutex
	started []string // under mu
}

func (g *gatedFetcher) Join(ctx context.Context, job fetch.Job) (*lockfree.Flight, *lockfree.Reader, bool) {
	return g.g.Join(ctx, job.Rel, func(ctx context.Context, fl *lockfree.Flight) error {
		g.mu.Lock()
		g.started = append(g.started, job.Rel)
		g.mu.Unlock()
		select {
		case <-g.gates[job.Rel]:
		case <-ctx.Done():
		}
		return nil
	})
}

func (g *gatedFetcher) startedSoFar() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.started)
}

// No more than cache.prefetch_concurrency downloads run at once: with
// every transfer held, exactly that many have started, and each one that
// ends lets the next start.
func TestPrefetchConcurrency(t *testing.T) {
	e := newEnv(t, config.Cache{Prefetch: true, FillOnAbort: true, PrefetchConcurrency: 2})
	names := []string{"a", "b", "c", "d", "e"}
	var old, next []pkgSpec
	for _, n := range names {
		old = append(old, pkgSpec{name: n, version: "1-1", size: 100})
		next = append(next, pkgSpec{name: n, version: "2-1", size: 100})
	}
	e.publish("core", next...)
	e.refreshDB("core")
	gf := &gatedFetcher{}
	p := New(e.cat, e.st, gf, Options{})
	for _, n := range names {
		e.p = p
		e.request("core", pkgFile(n, "1-1"))
	}
	synctest.Test(t, func(t *testing.T) {
		gf.gates = map[string]chan struct{}{} // made in the bubble, so that waiting on them is durable
		for _, n := range names {
			gf.gates[coreDir+"/"+pkgFile(n, "2-1")] = make(chan struct{})
		}
		done := make(chan struct{})
		go func() {
			p.prefetch(t.Context(), p.folders[0])
			close(done)
		}()
		for released := range len(names) {
			synctest.Wait()
			started := gf.startedSoFar()
			if want := min(released+2, len(names)); len(started) != want {
				t.Fatalf("with %d of %d transfers ended: %d started, want %d", released, len(names), len(started), want)
			}
			close(gf.gates[started[released]])
		}
		<-done
	})
}

// A client asking for a file the prefetch is fetching joins its flight:
// one upstream request. A client that joins and hangs up does not abandon
// it (cache.fill_on_abort false): the prefetch still holds it.
func TestClientJoinsPrefetch(t *testing.T) {
	e := newEnv(t, config.Cache{Prefetch: true, FillOnAbort: false})
	e.publish("core", pkgSpec{name: "a", version: "1-1", size: 100})
	e.refreshDB("core")
	e.newPrefetcher()
	e.request("core", pkgFile("a", "1-1"))
	e.start()
	a2 := pkgFile("a", "2-1")
	rel := coreDir + "/" + a2
	gate := make(chan struct{})
	release := stdsync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // a failing test still lets the transfer end
	e.up.SetFault("/core/os/x86_64/"+a2, faultserver.Fault{Gate: gate, GateAfter: 1000})
	e.publish("core", pkgSpec{name: "a", version: "2-1", size: 300_000})
	e.refreshDB("core")
	<-e.up.Seen("/core/os/x86_64/"+a2, 1) // the prefetch's request

	counts := proxy.NewMetrics(prometheus.NewRegistry(), e.cat, e.fetcher.Flights())
	h, err := proxy.New(e.cat, e.st, proxy.Options{Fetcher: e.fetcher, Metrics: counts})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer release() // before srv.Close, which waits for the handlers
	readers := func(n int) func() bool {
		return func() bool { f := e.fetcher.Flights().Lookup(rel); return f != nil && f.Readers() == n }
	}
	leaver, err := http.Get(srv.URL + "/" + rel) // returns with the headers
	if err != nil {
		t.Fatal(err)
	}
	defer leaver.Body.Close()
	waitFor(t, "the first client to join", readers(2))
	body := make(chan []byte)
	go func() {
		resp, err := http.Get(srv.URL + "/" + rel)
		if err != nil {
			body <- nil
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body <- b
	}()
	waitFor(t, "the second client to join", readers(3))
	leaver.Body.Close()
	waitFor(t, "the first client to leave", readers(2))
	release()
	if got := <-body; !bytes.Equal(got, e.files[a2]) {
		t.Errorf("the client that stayed got %d bytes, not the file", len(got))
	}
	if r := e.wait(); r.Files != 1 || r.Bytes != 300_000 || r.Failures != 0 {
		t.Errorf("run = %+v; want a 2-1 fetched by the prefetch", r)
	}
	if n := e.upstreamRequests("core", a2); n != 1 {
		t.Errorf("upstream requests for %s = %d, want 1", a2, n)
	}
	if c := counts.Counts().Coalesced; c != 2 {
		t.Errorf("coalesced requests = %d, want 2", c)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The hit path records a file at most once a minute, and a repeat within
// the minute costs no allocation and takes no lock.
func TestRequestedOncePerMinute(t *testing.T) {
	e := newEnv(t, config.Cache{Prefetch: true, FillOnAbort: true})
	e.newPrefetcher()
	clock := time.Now().Truncate(time.Second)
	e.p.now = func() time.Time { return clock }
	tg, err := e.cat.Resolve("/" + coreDir + "/" + pkgFile("a", "1-1"))
	if err != nil {
		t.Fatal(err)
	}
	f := e.p.folders[0]
	at := func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.names["a"].At }
	e.p.Requested(tg)
	first := clock
	clock = clock.Add(59 * time.Second)
	f.mu.Lock() // a repeat within the minute must not need it
	if allocs := testing.AllocsPerRun(100, func() { e.p.Requested(tg) }); allocs != 0 {
		t.Errorf("a repeat within the minute allocates %v times", allocs)
	}
	f.mu.Unlock()
	if got := at(); !got.Equal(first) {
		t.Errorf("recorded at %v after a repeat within the minute, want %v", got, first)
	}
	clock = clock.Add(time.Second)
	e.p.Requested(tg)
	if got := at(); !got.Equal(clock) {
		t.Errorf("recorded at %v a minute later, want %v", got, clock)
	}
}
