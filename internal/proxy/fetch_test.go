package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	stdsync "sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

// env is a proxy in front of one or more fault-injecting upstreams.
type env struct {
	t         *testing.T
	upstreams []*faultserver.Server
	h         *Handler
	cat       *catalog.Catalog
	srv       *httptest.Server
	reg       *prometheus.Registry
	dataDir   string
}

const pkgDir = "/core/os/x86_64/" // the upstream's path of the repo folder

// newEnv starts n upstream mirrors over one shared directory and a proxy
// for distro "archlinux" repo "core" (proxy mode) in front of them.
func newEnv(t *testing.T, n int, cache config.Cache) *env {
	return newEnvWith(t, n, cache, upstream.Options{StallTimeout: 30 * time.Second})
}

func newEnvWith(t *testing.T, n int, cache config.Cache, upOpts upstream.Options) *env {
	t.Helper()
	return newEnvShared(t, n, cache, upOpts, nil)
}

// newEnvShared is newEnvWith whose fetcher fills from and shares with
// shared, if not nil.
func newEnvShared(t *testing.T, n int, cache config.Cache, upOpts upstream.Options, shared fetch.Shared) *env {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, pkgDir), 0o755)
	e := &env{t: t, reg: prometheus.NewRegistry(), dataDir: t.TempDir()}
	var templates []string
	for range n {
		u := faultserver.NewTest(t, root)
		e.upstreams = append(e.upstreams, u)
		templates = append(templates, "http://"+u.Addr()+"/$repo/os/$arch")
	}
	if cache.DBMaxAge == 0 {
		cache.DBMaxAge = time.Hour
	}
	cfg := &config.Config{
		DataDir: e.dataDir,
		Cache:   cache,
		Distros: map[string]config.Distro{
			"archlinux": {Layout: "$repo/os/$arch", Arch: []string{"x86_64"}, Upstreams: templates,
				Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}}},
		},
	}
	st, err := store.Open(e.dataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	upOpts.Cooldown = time.Millisecond
	up, err := upstream.NewClient(upOpts, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.cat = testCatalog(t, cfg, st, up)
	var f *fetch.Fetcher
	if shared != nil {
		f = fetch.New(st, fetch.Options{Catalog: e.cat, Shared: shared, StallTimeout: 5 * time.Second, Registerer: e.reg})
	}
	e.h, err = New(e.cat, st, Options{Fetcher: f, Registerer: e.reg})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = serveFast(t, e.h)
	t.Cleanup(func() {
		e.srv.Close()
		e.h.fetcher.Shutdown(context.Background())
		up.Close()
		st.Close()
	})
	return e
}

// put writes a file into the upstream tree and returns its bytes.
func (e *env) put(name string, size int) []byte {
	e.t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	e.putBytes(name, data)
	return data
}

func (e *env) putBytes(name string, data []byte) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.upstreams[0].Root(), pkgDir, name), data, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// putDB writes core.db naming the given files with their true sizes and
// sums, except where lie says otherwise.
func (e *env) putDB(files map[string][]byte) {
	e.t.Helper()
	var pkgs []*alpm.Package
	for name, data := range files {
		fn, err := alpm.ParseFileName(name)
		if err != nil {
			e.t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		pkgs = append(pkgs, &alpm.Package{Filename: name, Name: fn.Name, Base: fn.Name, Version: fn.Version, Arch: fn.Arch,
			CSize: int64(len(data)), SHA256Sum: hex.EncodeToString(sum[:])})
	}
	var buf bytes.Buffer
	if err := alpm.WriteDB(&buf, pkgs, alpm.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.putBytes("core.db", buf.Bytes())
}

// getSettled is get, then a wait until no flight is left: a client has its
// last byte before the flight that sent it has committed the file.
func (e *env) getSettled(name string, header ...string) (int, []byte, http.Header, error) {
	code, body, hdr, err := e.get(name, header...)
	waitFor(e.t, "flights to end", func() bool { return e.h.flights.Len() == 0 })
	return code, body, hdr, err
}

func (e *env) url(name string) string { return e.srv.URL + "/archlinux" + pkgDir + name }

func (e *env) get(name string, header ...string) (int, []byte, http.Header, error) {
	return e.getFrom(e.srv.URL, name, header...)
}

// getFrom is get from the server at base.
func (e *env) getFrom(base, name string, header ...string) (int, []byte, http.Header, error) {
	req, _ := http.NewRequest("GET", base+"/archlinux"+pkgDir+name, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header, err
}

// upstreamRequests counts requests for name across every mirror.
func (e *env) upstreamRequests(name string) int {
	n := 0
	for _, u := range e.upstreams {
		n += u.Requests(pkgDir + name)
	}
	return n
}

func (e *env) result(result string) float64 {
	return testutil.ToFloat64(e.h.metrics.requests.WithLabelValues("archlinux/core", result))
}

// waitFor polls cond: the proxy offers no signal for "a client joined a
// flight", so tests wait for the observable state with a deadline.
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

const pkg = "hello-1.0-1-x86_64.pkg.tar.zst"

func TestMissThenHit(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true})
	data := e.put(pkg, 300_000)
	for i := range 3 {
		code, body, hdr, err := e.getSettled(pkg)
		if err != nil || code != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET %d = %d, %d bytes, %v; want 200 with the file", i, code, len(body), err)
		}
		if hdr.Get("Content-Length") != fmt.Sprint(len(data)) || hdr.Get("Content-Encoding") != "" {
			t.Errorf("GET %d headers = %v", i, hdr)
		}
	}
	if n := e.upstreamRequests(pkg); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
	if e.result(resultMiss) != 1 || e.result(resultHit) != 2 {
		t.Errorf("miss, hit = %v, %v; want 1, 2", e.result(resultMiss), e.result(resultHit))
	}
	cached, err := os.ReadFile(filepath.Join(e.dataDir, "tree/archlinux/core/os/x86_64", pkg))
	if err != nil || !bytes.Equal(cached, data) {
		t.Errorf("cached file differs from upstream (%v)", err)
	}
}

func TestManyClientsOneFetch(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true})
	size := 8 << 20
	if raceEnabled {
		size = 1 << 20
	}
	data := e.put(pkg, size)
	gate := make(chan struct{})
	e.upstreams[0].SetFault(pkgDir+pkg, faultserver.Fault{Gate: gate, GateAfter: int64(size / 4)})
	const clients = 100
	var wg stdsync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, _, err := e.get(pkg)
			switch {
			case err != nil:
				errs <- err
			case code != 200 || !bytes.Equal(body, data):
				errs <- fmt.Errorf("status %d, %d bytes, identical %v", code, len(body), bytes.Equal(body, data))
			}
		}()
	}
	waitFor(t, "every client to join the flight", func() bool {
		f := e.h.flights.Lookup("archlinux/core/os/x86_64/" + pkg)
		return f != nil && f.Readers() == clients
	})
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.upstreamRequests(pkg); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
	if m, c := e.result(resultMiss), e.result(resultCoalesced); m != 1 || c != clients-1 {
		t.Errorf("miss, coalesced = %v, %v; want 1, %d", m, c, clients-1)
	}
}

func TestSlowReaderDoesNotSlowOthers(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true})
	data := e.put(pkg, 16<<20)
	gate := make(chan struct{})
	e.upstreams[0].SetFault(pkgDir+pkg, faultserver.Fault{Gate: gate, GateAfter: 1})

	// The slow client reads its headers, then nothing until the end.
	slow, err := http.Get(e.url(pkg))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	fast := make(chan []byte)
	go func() {
		_, body, _, _ := e.get(pkg)
		fast <- body
	}()
	waitFor(t, "both clients on the flight", func() bool {
		f := e.h.flights.Lookup("archlinux/core/os/x86_64/" + pkg)
		return f != nil && f.Readers() == 2
	})
	close(gate)
	if body := <-fast; !bytes.Equal(body, data) {
		t.Fatalf("fast client got %d bytes, want the file", len(body))
	}
	// The fast client finished while the slow one had read nothing: the
	// flight did not wait for it.
	body, err := io.ReadAll(slow.Body)
	if err != nil || !bytes.Equal(body, data) {
		t.Errorf("slow client got %d bytes, %v", len(body), err)
	}
}

func TestBrokenUpstreamNeverCached(t *testing.T) {
	tests := []struct {
		name  string
		fault faultserver.Fault
		// healable: the upstream client may rightly finish the file by
		// resuming on the same mirror with a Range request.
		healable bool
	}{
		{"reset mid-body", faultserver.Fault{ResetAfter: 100_000}, true},
		{"short body", faultserver.Fault{ShortBody: 100_000}, true},
		{"corrupt bytes", faultserver.Fault{Corrupt: true}, false},
		{"status 500", faultserver.Fault{Status: 500}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 1, config.Cache{FillOnAbort: true})
			data := e.put(pkg, 300_000)
			e.putDB(map[string][]byte{pkg: data})
			if code, _, _, err := e.getSettled("core.db"); code != 200 || err != nil {
				t.Fatalf("GET core.db = %d, %v", code, err)
			}
			e.upstreams[0].SetFault(pkgDir+pkg, tt.fault)
			code, body, _, err := e.getSettled(pkg)
			complete := err == nil && code == 200
			if complete && !bytes.Equal(body, data) {
				t.Fatalf("client got a complete-looking 200 with wrong bytes (%d bytes)", len(body))
			}
			if complete && !tt.healable {
				t.Errorf("client got a complete 200 of %d bytes from a broken upstream", len(body))
			}
			cached, cerr := os.ReadFile(filepath.Join(e.dataDir, "tree/archlinux/core/os/x86_64", pkg))
			if cerr == nil && !bytes.Equal(cached, data) {
				t.Fatal("a broken file was cached")
			}
			if cerr == nil && !tt.healable {
				t.Error("a file from a broken upstream was cached")
			}
			e.upstreams[0].ClearFaults()
			code, body, _, err = e.get(pkg)
			if err != nil || code != 200 || !bytes.Equal(body, data) {
				t.Errorf("after the fault: %d, %d bytes, %v; want the file", code, len(body), err)
			}
		})
	}
}

func TestFailoverToHealthyMirror(t *testing.T) {
	e := newEnv(t, 2, config.Cache{FillOnAbort: true})
	data := e.put(pkg, 2<<20)
	e.putDB(map[string][]byte{pkg: data})
	e.getSettled("core.db")
	for _, u := range e.upstreams {
		u.Reset()
	}
	// The first mirror dies mid-body; the other must finish the file from
	// the exact offset, and nothing spliced may reach the client.
	first := e.cat.Mirrors(catalog.Target{Distro: "archlinux", Repo: "core"}).Health()[0].Mirror
	for _, u := range e.upstreams {
		if u.Addr() == first {
			u.SetFault(pkgDir+pkg, faultserver.Fault{ResetAfter: 500_000, Times: 1})
		}
	}
	code, body, _, err := e.get(pkg)
	if err != nil || code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET = %d, %d bytes, identical %v, %v; want the file", code, len(body), bytes.Equal(body, data), err)
	}
	ranged := 0
	for _, u := range e.upstreams {
		for _, l := range u.Log() {
			if l.Range != "" {
				ranged++
			}
		}
	}
	if ranged == 0 {
		t.Error("no upstream saw a Range request: the failover did not resume")
	}
}

func TestChunkedUpstream(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true})
	data := e.put(pkg, 1<<20)
	e.upstreams[0].SetFault(pkgDir+pkg, faultserver.Fault{Chunked: true})
	var wg stdsync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, _, err := e.get(pkg)
			if err != nil || code != 200 || !bytes.Equal(body, data) {
				t.Errorf("GET = %d, %d bytes, %v; want the file", code, len(body), err)
			}
		}()
	}
	wg.Wait()
	m, err := e.h.store.Stat("archlinux/core/os/x86_64/" + pkg)
	if err != nil || m.Size != int64(len(data)) {
		t.Errorf("cached size = %d, %v; want %d", m.Size, err, len(data))
	}
}

func TestRangeOnInFlightFile(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true})
	data := e.put(pkg, 4<<20)
	gate := make(chan struct{})
	e.upstreams[0].SetFault(pkgDir+pkg, faultserver.Fault{Gate: gate, GateAfter: 2 << 20})
	go e.get(pkg) // starts the flight
	waitFor(t, "the flight to pass 2 MiB", func() bool {
		f := e.h.flights.Lookup("archlinux/core/os/x86_64/" + pkg)
		return f != nil && f.Written() >= 1<<20
	})
	// Bytes already written are served at once, while the gate holds the rest.
	code, body, hdr, err := e.get(pkg, "Range", "bytes=1000-1999")
	if err != nil || code != 206 || !bytes.Equal(body, data[1000:2000]) {
		t.Fatalf("Range on in-flight = %d, %d bytes, %v", code, len(body), err)
	}
	if cr := hdr.Get("Content-Range"); cr != fmt.Sprintf("bytes 1000-1999/%d", len(data)) {
		t.Errorf("Content-Range = %q", cr)
	}
	close(gate)
	code, body, _, err = e.get(pkg, "Range", fmt.Sprintf("bytes=%d-", len(data)-10))
	if err != nil || code != 206 || !bytes.Equal(body, data[len(data)-10:]) {
		t.Errorf("Range at the end = %d, %q, %v", code, body, err)
	}
	if n := e.upstreamRequests(pkg); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
}

func TestNotFoundIsCachedBriefly(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true, NegativeTTL: time.Hour})
	for range 3 {
		if code, _, _, _ := e.get(pkg + ".sig"); code != 404 {
			t.Fatalf("GET missing sig = %d, want 404", code)
		}
	}
	if n := e.upstreamRequests(pkg + ".sig"); n != 1 {
		t.Errorf("upstream requests for a missing sig = %d, want 1", n)
	}
}

func TestHeadMissDoesNotDownload(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true})
	data := e.put(pkg, 1<<20)
	resp, err := http.Head(e.url(pkg))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
		t.Errorf("HEAD = %d, length %d; want 200, %d", resp.StatusCode, resp.ContentLength, len(data))
	}
	for _, l := range e.upstreams[0].Log() {
		if l.Method != "HEAD" {
			t.Errorf("upstream saw %s %s for a HEAD on a miss", l.Method, l.Path)
		}
	}
}

func TestDatabaseRevalidation(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true, DBMaxAge: time.Hour})
	for _, f := range []string{"core.db", "core.files", "core.files.sig"} {
		e.put(f, 1000)
	}
	for _, f := range []string{"core.db", "core.files", "core.files.sig"} {
		for range 3 {
			if code, _, _, err := e.getSettled(f); code != 200 || err != nil {
				t.Fatalf("GET %s = %d, %v", f, code, err)
			}
		}
		if n := e.upstreamRequests(f); n != 1 {
			t.Errorf("%s: upstream requests within db_max_age = %d, want 1", f, n)
		}
	}

	// Age the cached copies: the next request must revalidate each, .files.sig included.
	e.h.cache.DBMaxAge = time.Nanosecond
	for _, f := range []string{"core.db", "core.files", "core.files.sig"} {
		code, _, _, _ := e.getSettled(f)
		if code != 200 {
			t.Errorf("GET %s after max age = %d", f, code)
		}
		if n := e.upstreamRequests(f); n != 2 {
			t.Errorf("%s: upstream requests after max age = %d, want 2 (a revalidation)", f, n)
		}
	}
	if e.result(resultRevalidated) != 3 {
		t.Errorf("revalidated = %v, want 3", e.result(resultRevalidated))
	}

	// A changed db upstream is picked up.
	newDB := e.put("core.db", 2000)
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(e.upstreams[0].Root(), pkgDir, "core.db"), future, future)
	if _, body, _, _ := e.getSettled("core.db"); !bytes.Equal(body, newDB) {
		t.Error("the new core.db was not served after revalidation")
	}

	// Upstream down: the stale copy is served, and says so.
	e.upstreams[0].SetFault(faultserver.AnyPath, faultserver.Fault{Status: 503})
	code, body, hdr, _ := e.getSettled("core.db")
	if code != 200 || !bytes.Equal(body, newDB) || hdr.Get("Warning") == "" {
		t.Errorf("stale GET = %d, warning %q; want 200 with the last copy and a Warning", code, hdr.Get("Warning"))
	}
	if e.result(resultStale) != 1 {
		t.Errorf("stale = %v, want 1", e.result(resultStale))
	}
}

func TestClientIfModifiedSinceOnDB(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true})
	e.put("core.db", 500)
	_, _, hdr, _ := e.get("core.db")
	code, _, _, _ := e.get("core.db", "If-Modified-Since", hdr.Get("Last-Modified"))
	if code != 304 {
		t.Errorf("client If-Modified-Since on a fresh db = %d, want 304", code)
	}
}

func TestCacheKeyIsWholePath(t *testing.T) {
	x86 := faultserver.NewTest(t, t.TempDir())
	arm := faultserver.NewTest(t, t.TempDir())
	os.MkdirAll(filepath.Join(x86.Root(), "core/os/x86_64"), 0o755)
	os.MkdirAll(filepath.Join(arm.Root(), "aarch64/core"), 0o755)
	os.WriteFile(filepath.Join(x86.Root(), "core/os/x86_64/core.db"), []byte("x86_64 db"), 0o644)
	os.WriteFile(filepath.Join(arm.Root(), "aarch64/core/core.db"), []byte("aarch64 db"), 0o644)
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir, Cache: config.Cache{FillOnAbort: true, DBMaxAge: time.Hour}, Distros: map[string]config.Distro{
		"archlinux": {Layout: "$repo/os/$arch", Arch: []string{"x86_64"}, Upstreams: []string{"http://" + x86.Addr() + "/$repo/os/$arch"},
			Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}}},
		"archlinuxarm": {Layout: "$arch/$repo", Arch: []string{"aarch64"}, Upstreams: []string{"http://" + arm.Addr() + "/$arch/$repo"},
			Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}}},
	}}
	st, _ := store.Open(dir, store.Options{})
	defer st.Close()
	up, _ := upstream.NewClient(upstream.Options{}, nil)
	h, err := New(testCatalog(t, cfg, st, up), st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for path, want := range map[string]string{"/archlinux/core/os/x86_64/core.db": "x86_64 db", "/archlinuxarm/aarch64/core/core.db": "aarch64 db"} {
		for range 2 {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != want {
				t.Errorf("GET %s = %q, want %q", path, body, want)
			}
		}
	}
}

func TestFillOutlivesClient(t *testing.T) {
	for _, fillOnAbort := range []bool{true, false} {
		t.Run(fmt.Sprintf("fill_on_abort=%v", fillOnAbort), func(t *testing.T) {
			e := newEnv(t, 1, config.Cache{FillOnAbort: fillOnAbort})
			data := e.put(pkg, 1<<20)
			gate := make(chan struct{})
			e.upstreams[0].SetFault(pkgDir+pkg, faultserver.Fault{Gate: gate, GateAfter: 1 << 18})
			resp, err := http.Get(e.url(pkg))
			if err != nil {
				t.Fatal(err)
			}
			key := "archlinux/core/os/x86_64/" + pkg
			f := e.h.flights.Lookup(key)
			if f == nil {
				t.Fatal("no flight while the gate holds the body")
			}
			resp.Body.Close() // the only client hangs up mid-transfer
			waitFor(t, "the client to leave", func() bool { return f.Readers() == 0 })
			close(gate)
			<-f.Done()
			cached, err := os.ReadFile(filepath.Join(e.dataDir, "tree", key))
			if fillOnAbort && (err != nil || !bytes.Equal(cached, data)) {
				t.Errorf("fill_on_abort: the file was not cached whole (%v)", err)
			}
			if !fillOnAbort && err == nil {
				t.Error("fill_on_abort=false: a fill nobody read was finished and cached")
			}
		})
	}
}

func TestStallFailsOver(t *testing.T) {
	e := newEnvWith(t, 2, config.Cache{FillOnAbort: true}, upstream.Options{StallTimeout: 300 * time.Millisecond})
	data := e.put(pkg, 1<<20)
	gate := make(chan struct{}) // never opened: that mirror stalls for good
	defer close(gate)
	first := e.cat.Mirrors(catalog.Target{Distro: "archlinux", Repo: "core"}).Health()[0].Mirror
	for _, u := range e.upstreams {
		if u.Addr() == first {
			u.SetFault(pkgDir+pkg, faultserver.Fault{Gate: gate, GateAfter: 100_000})
		}
	}
	code, body, _, err := e.getSettled(pkg)
	if err != nil || code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET with a stalled first mirror = %d, %d bytes, %v; want the file", code, len(body), err)
	}
}

func TestNewDBExpiresItsSig(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true, DBMaxAge: time.Hour})
	e.put("core.db", 100)
	e.put("core.db.sig", 10)
	e.getSettled("core.db")
	e.getSettled("core.db.sig")
	// A new db arrives (forced revalidation); its sig must be asked for again.
	newSig := e.put("core.db.sig", 12)
	e.put("core.db", 200)
	m, err := e.h.store.Stat("archlinux/core/os/x86_64/core.db")
	if err != nil {
		t.Fatal(err)
	}
	m.FetchedAt = time.Time{}
	if err := e.h.store.SetMeta("archlinux/core/os/x86_64/core.db", m); err != nil {
		t.Fatal(err)
	}
	e.getSettled("core.db")
	if _, body, _, _ := e.getSettled("core.db.sig"); !bytes.Equal(body, newSig) {
		t.Errorf("after a new db, the old sig was served (%d bytes, want %d)", len(body), len(newSig))
	}
}
