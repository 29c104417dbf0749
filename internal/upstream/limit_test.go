package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/prometheus/client_golang/prometheus"
)

// gatedUpstream is a mirror that counts the requests inside it at once and
// holds each one, before its headers, until gate is closed.
type gatedUpstream struct {
	srv     *httptest.Server
	gate    chan struct{}
	arrived chan string // each request's path as it arrives
	cur     atomic.Int32
	peak    atomic.Int32
	total   atomic.Int32
}

func newGatedUpstream(t *testing.T) *gatedUpstream {
	u := &gatedUpstream{gate: make(chan struct{}), arrived: make(chan string, 1024)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.total.Add(1)
		n := u.cur.Add(1)
		for p := u.peak.Load(); n > p && !u.peak.CompareAndSwap(p, n); p = u.peak.Load() {
		}
		u.arrived <- r.URL.Path
		select {
		case <-u.gate:
		case <-r.Context().Done():
		}
		// Out before the answer: the client holds its slot until it has
		// read the answer, so cur never counts a request it has let go.
		u.cur.Add(-1)
		body := gatedBody(r.URL.Path)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	t.Cleanup(u.srv.Close)
	t.Cleanup(u.open) // before Close: let held handlers return
	return u
}

func (u *gatedUpstream) open() {
	select {
	case <-u.gate:
	default:
		close(u.gate)
	}
}

func (u *gatedUpstream) template() string { return u.srv.URL + "/$repo/os/$arch" }

func gatedBody(path string) []byte { return []byte("the file at " + path + "\n") }

// newSetOf is newSet over URL templates.
func newSetOf(t *testing.T, opts Options, templates ...string) (*MirrorSet, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := NewClient(opts, reg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	set, err := c.Mirrors(templates)
	if err != nil {
		t.Fatalf("Mirrors(%q): %v", templates, err)
	}
	return set, reg
}

// signalGauge is a mirror's waiting gauge that also reports each Inc, so
// a test knows when a request has started to wait, without polling.
type signalGauge struct {
	prometheus.Gauge
	inc chan struct{}
}

func (g signalGauge) Inc() {
	g.Gauge.Inc()
	g.inc <- struct{}{}
}

// watchWaits makes m's slots report each request that starts to wait.
// It must run before the first Fetch.
func watchWaits(m *mirror) <-chan struct{} {
	ch := make(chan struct{}, 1024)
	m.slots.waiting = signalGauge{Gauge: m.slots.waiting, inc: ch}
	return ch
}

func inUse(m *mirror) int { return len(m.slots.sem) }

// await receives from ch, or fails the test if nothing comes for long:
// a guard against a hang, not a part of the ordering.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s in 30s", what)
		panic("unreachable")
	}
}

// fetchString fetches name from the core repo and reads the whole body.
func fetchString(ctx context.Context, set *MirrorSet, name string) (string, error) {
	resp, err := set.Fetch(ctx, Request{Repo: testRepo, Arch: testArch, File: name})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// 50 distinct misses with max_conns_per_mirror 4: the mirror never sees
// more than 4 at once, the other 46 wait (and the gauge says so), and all
// 50 complete.
func TestMaxConnsPerMirror(t *testing.T) {
	const limit, fetches = 4, 50
	up := newGatedUpstream(t)
	opts := testOptions()
	opts.MaxConnsPerMirror = limit
	set, reg := newSetOf(t, opts, up.template())
	m := set.mirrors[0]
	waits := watchWaits(m)

	errc := make(chan error, fetches)
	for i := range fetches {
		go func() {
			name := fmt.Sprintf("f%02d.pkg.tar.zst", i)
			got, err := fetchString(t.Context(), set, name)
			if err == nil && got != string(gatedBody("/core/os/x86_64/"+name)) {
				err = fmt.Errorf("%s: body %q", name, got)
			}
			errc <- err
		}()
	}
	for range limit {
		await(t, up.arrived, "request at the upstream")
	}
	for i := range fetches - limit {
		await(t, waits, fmt.Sprintf("waiter %d", i+1))
	}
	if v := metricValue(t, reg, "mirrord_upstream_waiting_requests", m.label, ""); v != fetches-limit {
		t.Errorf("waiting_requests with %d in the upstream = %v, want %d", limit, v, fetches-limit)
	}
	if n := inUse(m); n != limit {
		t.Errorf("slots in use = %d, want %d", n, limit)
	}
	if n := up.total.Load(); n != limit {
		t.Errorf("upstream saw %d requests while %d wait, want %d", n, fetches-limit, limit)
	}
	up.open()
	for range fetches {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if p := up.peak.Load(); p != limit {
		t.Errorf("peak concurrent requests at the upstream = %d, want %d", p, limit)
	}
	if n := up.total.Load(); n != fetches {
		t.Errorf("upstream saw %d requests, want %d", n, fetches)
	}
	if v := metricValue(t, reg, "mirrord_upstream_waiting_requests", m.label, ""); v != 0 {
		t.Errorf("waiting_requests after every fetch = %v, want 0", v)
	}
	if n := inUse(m); n != 0 {
		t.Errorf("slots in use after every fetch = %d, want 0", n)
	}
}

// A waiter whose context ends leaves at once, with the context's error,
// without asking the mirror, blaming it or failing over; and it gives back
// nothing, since it took nothing: the holder still holds the one slot.
func TestWaiterLeavesOnContext(t *testing.T) {
	up := newGatedUpstream(t)
	other := newGatedUpstream(t) // a second mirror the waiter must not fail over to
	other.open()
	opts := testOptions()
	opts.MaxConnsPerMirror = 1
	set, reg := newSetOf(t, opts, up.template(), other.template())
	m := set.mirrors[0]
	waits := watchWaits(m)

	holder := make(chan error, 1)
	go func() {
		_, err := fetchString(t.Context(), set, "held.pkg.tar.zst")
		holder <- err
	}()
	await(t, up.arrived, "holder at the upstream")
	ctx, cancel := context.WithCancel(t.Context())
	waiter := make(chan error, 1)
	go func() {
		_, err := fetchString(ctx, set, "waiter.pkg.tar.zst")
		waiter <- err
	}()
	await(t, waits, "waiter")
	cancel()
	if err := <-waiter; !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch by a waiter whose context ended = %v, want context.Canceled", err)
	}
	if v := metricValue(t, reg, "mirrord_upstream_waiting_requests", m.label, ""); v != 0 {
		t.Errorf("waiting_requests after the waiter left = %v, want 0", v)
	}
	if n := inUse(m); n != 1 {
		t.Errorf("slots in use after the waiter left = %d, want 1 (the holder's)", n)
	}
	if n := up.total.Load(); n != 1 {
		t.Errorf("upstream saw %d requests, want 1 (the holder's)", n)
	}
	if n := other.total.Load(); n != 0 {
		t.Errorf("the other mirror saw %d requests, want 0 (a waiter that leaves does not fail over)", n)
	}
	if h := set.Health(); h[0].Errors+h[1].Errors != 0 {
		t.Errorf("mirror errors after a waiter left = %d, %d, want 0", h[0].Errors, h[1].Errors)
	}
	up.open()
	if err := <-holder; err != nil {
		t.Errorf("holder: %v", err)
	}
	if n := inUse(m); n != 0 {
		t.Errorf("slots in use after the holder = %d, want 0", n)
	}
	if _, err := fetchString(t.Context(), set, "after.pkg.tar.zst"); err != nil {
		t.Errorf("a fetch after the waiter left: %v", err)
	}
}

// Every answer gives its slot back: at once for a HEAD, a 304, a 404 or a
// failed mirror (before the next one is tried), and for a body when it
// ends. With one slot per mirror, a fetch that would hold on to one, or
// take the next before giving back the last, would hang here.
func TestSlotReleased(t *testing.T) {
	tests := []struct {
		name  string
		fault faultserver.Fault // on mirror A for the package
		req   func() Request
	}{
		{name: "body", req: pkgReq},
		{name: "head", req: func() Request { r := pkgReq(); r.Method = http.MethodHead; return r }},
		{name: "not modified", req: func() Request { r := dbReq(); r.IfModifiedSince = mtime; return r }},
		{name: "not found", req: func() Request { r := pkgReq(); r.File = "missing.pkg.tar.zst"; return r }},
		{name: "failover on 503", fault: faultserver.Fault{Status: http.StatusServiceUnavailable}, req: pkgReq},
		{name: "resume after a reset", fault: faultserver.Fault{ResetAfter: 70_001}, req: pkgReq},
		{name: "resume on the same mirror", fault: faultserver.Fault{ResetAfter: 70_001, Times: 1}, req: pkgReq},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMirrors(t, 2)
			srv[0].SetFault(pkgPath, tc.fault)
			opts := testOptions()
			opts.MaxConnsPerMirror = 1
			mirrors := srv
			if tc.name == "resume on the same mirror" {
				mirrors = srv[:1]
			}
			set, _ := newSet(t, opts, mirrors...)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			for round := range 2 { // the second finds the slots free
				resp, err := set.Fetch(ctx, tc.req())
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil && !errors.Is(err, ErrNotModified) && !errors.Is(err, ErrNotFound) {
					t.Fatalf("round %d: Fetch: %v", round, err)
				}
				for _, m := range set.mirrors {
					if n := inUse(m); n != 0 {
						t.Errorf("round %d: %s has %d slots in use after the fetch, want 0", round, m.label, n)
					}
				}
			}
		})
	}
}

// A failed mirror's slot is free while the fetch holds the next one's.
func TestFailoverFreesSlotFirst(t *testing.T) {
	srv := startMirrors(t, 2)
	srv[0].SetFault(faultserver.AnyPath, faultserver.Fault{Status: http.StatusServiceUnavailable})
	opts := testOptions()
	opts.MaxConnsPerMirror = 1
	set, _ := newSet(t, opts, srv...)
	resp, err := set.Fetch(t.Context(), pkgReq())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a, b := set.mirrors[0], set.mirrors[1]
	if na, nb := inUse(a), inUse(b); na != 0 || nb != 1 {
		t.Errorf("slots in use with the body open = A %d, B %d; want 0, 1", na, nb)
	}
}

// Waiting for a slot counts against neither the header timeout nor the
// stall watchdog: a waiter that waits three times as long as either still
// gets its file. The gates order the requests; the sleep only lets real
// time pass, since the two timeouts are real time.
func TestWaitIsNotATimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	srv := startMirrors(t, 1)
	opts := testOptions()
	opts.MaxConnsPerMirror = 1
	opts.HeaderTimeout, opts.StallTimeout = timeout, timeout
	set, _ := newSet(t, opts, srv...)
	waits := watchWaits(set.mirrors[0])

	held, err := set.Fetch(t.Context(), pkgReq()) // holds the slot, unread
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		body []byte
		err  error
	}
	waiter := make(chan result, 1)
	go func() {
		_, b, err := fetchAll(t, set, dbReq())
		waiter <- result{b, err}
	}()
	await(t, waits, "waiter")
	time.Sleep(3 * timeout)
	got, err := io.ReadAll(held.Body)
	held.Body.Close()
	if err != nil {
		t.Fatalf("holder: %v", err)
	}
	sameBytes(t, got, pkgData)
	r := <-waiter
	if r.err != nil {
		t.Fatalf("a waiter that waited %s (header and stall timeouts %s): %v", 3*timeout, timeout, r.err)
	}
	sameBytes(t, r.body, dbData)
}

// The slots belong to the host: two sets naming it share them.
func TestSlotsSharedByHost(t *testing.T) {
	c, err := NewClient(testOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := c.Mirrors([]string{"https://m.example/archlinux/$repo/os/$arch", "https://n.example/$repo/os/$arch"})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Mirrors([]string{"https://m.example:443/archlinuxarm/$arch/$repo"})
	if err != nil {
		t.Fatal(err)
	}
	if s1.mirrors[0].slots != s2.mirrors[0].slots {
		t.Error("two sets naming m.example:443 have their own slots, want shared ones")
	}
	if s1.mirrors[0].slots == s1.mirrors[1].slots {
		t.Error("m.example and n.example share slots, want their own")
	}
	if n := cap(s1.mirrors[0].slots.sem); n != 16 {
		t.Errorf("default slots per mirror = %d, want 16", n)
	}
}
