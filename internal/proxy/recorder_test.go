package proxy

import (
	"maps"
	stdsync "sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/catalog"
)

// countingRecorder counts the files it is told of.
type countingRecorder struct {
	mu    stdsync.Mutex
	files map[string]int // under mu
}

func (r *countingRecorder) Requested(t catalog.Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[t.File]++
}

func (r *countingRecorder) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.files)
}

// The Recorder hears of every package and .sig a client got, on a miss
// and on a hit on either serving path; not of databases nor of files
// upstream does not have.
func TestRecorderHearsServedPackages(t *testing.T) {
	e := newEnv(t, 1, config.Cache{FillOnAbort: true})
	data := e.put(pkg, 100_000)
	e.put(pkg+".sig", 100)
	e.putDB(map[string][]byte{pkg: data})
	rec := &countingRecorder{files: map[string]int{}}
	h, err := New(e.cat, e.h.store, Options{Fetcher: e.h.fetcher, Requests: rec, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveFast(t, h)
	get := func(file string, want int, header ...string) {
		t.Helper()
		code, _, _, err := e.getFrom(srv.URL, file, header...)
		if err != nil || code != want {
			t.Fatalf("GET %s = %d, %v; want %d", file, code, err, want)
		}
	}
	get("core.db", 200)
	get("nope-1-1-x86_64.pkg.tar.zst", 404)
	if got := rec.counts(); len(got) != 0 {
		t.Fatalf("recorded %v for a database and a 404", got)
	}
	get(pkg, 200)                       // miss
	get(pkg+".sig", 200)                // miss
	get(pkg, 200)                       // hit, fast path
	get(pkg, 206, "Range", "bytes=0-9") // hit, net/http
	want := map[string]int{pkg: 3, pkg + ".sig": 1}
	waitFor(t, "the records of the misses", func() bool { return maps.Equal(rec.counts(), want) })
}
