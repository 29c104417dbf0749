package lease_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/internal/lease"
	"github.com/mirrord/mirrord/internal/s3test"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/fsobj"
	"github.com/mirrord/mirrord/internal/store/objtest"
	"github.com/mirrord/mirrord/internal/store/s3obj"
)

const (
	prefix = "_mirrord/leases/"
	ttl    = 300 * time.Millisecond
	skew   = 50 * time.Millisecond
)

// TestLease runs every test against both backends: a tree in a temp dir,
// and a real SeaweedFS (one server for all, each test in a prefix of its
// own).
func TestLease(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, objs store.Objects)
	}{
		{"ExclusionByRelease", testExclusionByRelease},
		{"ExclusionByTakeover", testExclusionByTakeover},
		{"Takeover", testTakeover},
		{"RenewKeeps", testRenewKeeps},
		{"Release", testRelease},
		{"NotALease", testNotALease},
		{"LostAnswer", testLostAnswer},
		{"RunRenews", testRunRenews},
		{"RunLosesToTakeover", testRunLosesToTakeover},
		{"RunLosesAtExpiry", testRunLosesAtExpiry},
		{"RunHeld", testRunHeld},
		{"RunInTurn", testRunInTurn},
		{"RunMetrics", testRunMetrics},
	}
	t.Run("fs", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				tr, err := fsobj.Open(t.TempDir(), fsobj.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { tr.Close() })
				tc.fn(t, tr)
			})
		}
	})
	t.Run("s3", func(t *testing.T) {
		srv := s3test.Start(t)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				b, err := s3obj.New(s3obj.Options{
					Endpoint: srv.Endpoint, Bucket: srv.Bucket, Prefix: randomPrefix(), Region: "us-east-1",
					PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
				})
				if err != nil {
					t.Fatal(err)
				}
				tc.fn(t, b)
			})
		}
	})
}

func randomPrefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "test-" + hex.EncodeToString(b)
}

// clock is a node's clock that a test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newManager(t *testing.T, objs lease.Objects, c *clock) *lease.Manager {
	t.Helper()
	opts := lease.Options{Prefix: prefix, Skew: skew}
	if c != nil {
		opts.Now = c.Now
	}
	m, err := lease.New(objs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func acquire(t *testing.T, m *lease.Manager, name, holder string) *lease.Lease {
	t.Helper()
	l, err := m.Acquire(t.Context(), name, holder, ttl)
	if err != nil {
		t.Fatalf("Acquire(%s, %s) = %v", name, holder, err)
	}
	return l
}

func wantHeld(t *testing.T, m *lease.Manager, name, holder, by string) {
	t.Helper()
	l, err := m.Acquire(t.Context(), name, holder, ttl)
	if !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("Acquire(%s, %s) = %v, %v; want ErrHeld", name, holder, l, err)
	}
	if !strings.Contains(err.Error(), "held by "+by) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), holder) {
		t.Errorf("Acquire(%s, %s) = %q: want the lease, the asker and its holder %s named", name, holder, err, by)
	}
}

// testExclusionByRelease: 8 nodes take turns on one lease, each as soon
// as the last released it, and no two ever hold it at once; every hold
// has the next fencing token.
func testExclusionByRelease(t *testing.T, objs store.Objects) {
	const nodes, turns = 8, 4
	var holders atomic.Int32
	var mu sync.Mutex
	var tokens []uint64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range nodes {
		m := newManager(t, objs, nil) // real clock; ttl far beyond the test
		wg.Go(func() {
			<-start
			for n := 0; n < turns && !t.Failed(); {
				l, err := m.Acquire(t.Context(), "db/core/x86_64", fmt.Sprintf("node-%d", i), time.Minute)
				if errors.Is(err, lease.ErrHeld) {
					runtime.Gosched()
					continue
				}
				if err != nil {
					t.Errorf("node %d: Acquire = %v", i, err)
					return
				}
				if h := holders.Add(1); h != 1 {
					t.Errorf("node %d holds the lease with %d others", i, h-1)
				}
				mu.Lock()
				tokens = append(tokens, l.Token())
				mu.Unlock()
				runtime.Gosched()
				holders.Add(-1)
				if err := l.Release(t.Context()); err != nil {
					t.Errorf("node %d: Release = %v", i, err)
					return
				}
				n++
			}
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(tokens)
	for i, tok := range tokens {
		if tok != uint64(i+1) {
			t.Fatalf("tokens %v: want 1 to %d, each once", tokens, nodes*turns)
		}
	}
}

// testExclusionByTakeover: round after round, the lease's holder dies
// (stops renewing) and 8 nodes race to take it over once it expires:
// exactly one does, with the next token. (SeaweedFS holds the losers of
// a conditional PUT for a second or more before its 412: few rounds.)
func testExclusionByTakeover(t *testing.T, objs store.Objects) {
	const nodes, rounds = 8, 6
	c := newClock()
	ms := make([]*lease.Manager, nodes)
	for i := range ms {
		ms[i] = newManager(t, objs, c)
	}
	for round := range rounds {
		start := make(chan struct{})
		got := make([]*lease.Lease, nodes)
		errs := make([]error, nodes)
		var wg sync.WaitGroup
		for i, m := range ms {
			wg.Go(func() {
				<-start
				got[i], errs[i] = m.Acquire(t.Context(), "jobs/42", fmt.Sprintf("node-%d", i), ttl)
			})
		}
		close(start)
		wg.Wait()
		winner := objtest.Winner(t, fmt.Sprintf("round %d: Acquire", round), errs, lease.ErrHeld)
		if tok := got[winner].Token(); tok != uint64(round+1) {
			t.Errorf("round %d: token %d, want %d", round, tok, round+1)
		}
		c.Advance(ttl + skew + time.Millisecond)
	}
}

// testTakeover: a lease is held until its expiry plus the skew; then
// another node takes it over, and the old holder's Renew and Release say
// it is lost, naming the new holder.
func testTakeover(t *testing.T, objs store.Objects) {
	ca, cb := newClock(), newClock()
	a, b := newManager(t, objs, ca), newManager(t, objs, cb)
	la := acquire(t, a, "db/core/x86_64", "node-a")
	if la.Token() != 1 || !la.Expires().Equal(ca.Now().Add(ttl)) {
		t.Errorf("first lease: token %d, expires %v; want 1, %v", la.Token(), la.Expires(), ca.Now().Add(ttl))
	}
	wantHeld(t, b, "db/core/x86_64", "node-b", "node-a")
	cb.Advance(ttl + skew) // expired, but within the skew
	wantHeld(t, b, "db/core/x86_64", "node-b", "node-a")
	cb.Advance(time.Millisecond)
	lb := acquire(t, b, "db/core/x86_64", "node-b")
	if lb.Token() != 2 {
		t.Errorf("taken-over lease: token %d, want 2", lb.Token())
	}
	// node-a's clock has not moved (it was paused): only the store tells.
	err := la.Renew(t.Context())
	if !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), "taken by node-b") || !strings.Contains(err.Error(), "node-a") {
		t.Errorf("Renew after a takeover = %v, want ErrLost naming node-a and node-b", err)
	}
	if err := la.Release(t.Context()); !errors.Is(err, lease.ErrLost) {
		t.Errorf("Release after a takeover = %v, want ErrLost", err)
	}
	if err := lb.Renew(t.Context()); err != nil {
		t.Errorf("new holder's Renew = %v", err)
	}
	wantHeld(t, a, "db/core/x86_64", "node-a", "node-b")
	// Another lease is another object.
	if l := acquire(t, a, "db/extra/x86_64", "node-a"); l.Token() != 1 {
		t.Errorf("another lease: token %d, want 1", l.Token())
	}
}

// testRenewKeeps: a renewed lease is held ttl from the renewal, and an
// expired one that no one took is still its holder's.
func testRenewKeeps(t *testing.T, objs store.Objects) {
	c := newClock()
	a, b := newManager(t, objs, c), newManager(t, objs, c)
	la := acquire(t, a, "db/core/x86_64", "node-a")
	for range 3 {
		c.Advance(ttl * 2 / 3)
		if err := la.Renew(t.Context()); err != nil {
			t.Fatalf("Renew = %v", err)
		}
		if want := c.Now().Add(ttl); !la.Expires().Equal(want) {
			t.Errorf("Expires after Renew = %v, want %v", la.Expires(), want)
		}
		c.Advance(ttl * 2 / 3)
		wantHeld(t, b, "db/core/x86_64", "node-b", "node-a")
	}
	c.Advance(2 * ttl)
	if err := la.Renew(t.Context()); err != nil {
		t.Errorf("Renew of an expired lease no one took = %v", err)
	}
	wantHeld(t, b, "db/core/x86_64", "node-b", "node-a")
}

// testRelease: a released lease is taken at once, with the next token;
// the old hold is over.
func testRelease(t *testing.T, objs store.Objects) {
	c := newClock()
	a, b := newManager(t, objs, c), newManager(t, objs, c)
	la := acquire(t, a, "jobs/7", "node-a")
	if err := la.Release(t.Context()); err != nil {
		t.Fatalf("Release = %v", err)
	}
	if err := la.Release(t.Context()); err != nil {
		t.Errorf("second Release = %v, want nil", err)
	}
	lb := acquire(t, b, "jobs/7", "node-b") // the same instant
	if lb.Token() != 2 {
		t.Errorf("token after a release: %d, want 2", lb.Token())
	}
	if err := la.Renew(t.Context()); !errors.Is(err, lease.ErrLost) {
		t.Errorf("Renew after Release = %v, want ErrLost", err)
	}
	wantHeld(t, a, "jobs/7", "node-a", "node-b")
}

// testNotALease: an object under the prefix that is no lease is an
// error, not a lease free to take; so are bad names and arguments.
func testNotALease(t *testing.T, objs store.Objects) {
	m := newManager(t, objs, nil)
	for i, junk := range []string{"{}", "not json", `{"holder":"x","token":0,"write":"1"}`} {
		key := fmt.Sprintf("junk/%d", i)
		sum := sha256.Sum256([]byte(junk))
		if err := objs.Put(t.Context(), prefix+key, strings.NewReader(junk), store.ObjectMeta{Size: int64(len(junk)), SHA256: hex.EncodeToString(sum[:])}); err != nil {
			t.Fatal(err)
		}
		if l, err := m.Acquire(t.Context(), key, "node-a", ttl); err == nil || errors.Is(err, lease.ErrHeld) {
			t.Errorf("Acquire over %q = %v, %v; want an error", junk, l, err)
		}
	}
	for _, tc := range []struct {
		name, holder string
		ttl          time.Duration
	}{{"", "a", ttl}, {"../x", "a", ttl}, {"a//b", "a", ttl}, {"ok", "", ttl}, {"ok", "a", 0}} {
		if _, err := m.Acquire(t.Context(), tc.name, tc.holder, tc.ttl); err == nil {
			t.Errorf("Acquire(%q, %q, %v) succeeded", tc.name, tc.holder, tc.ttl)
		}
	}
	for _, opts := range []lease.Options{{}, {Prefix: "../"}, {Prefix: "/abs/"}, {Prefix: "x/", Skew: -1}} {
		if _, err := lease.New(objs, opts); err == nil {
			t.Errorf("New(%+v) succeeded", opts)
		}
	}
}

// forgetful commits a PutIfMatch but answers it with an error, once
// armed: a store whose answer is lost after it committed.
type forgetful struct {
	lease.Objects
	armed atomic.Bool
}

func (f *forgetful) PutIfMatch(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, version string) (string, error) {
	v, err := f.Objects.PutIfMatch(ctx, key, r, meta, version)
	if err == nil && f.armed.CompareAndSwap(true, false) {
		return "", errors.New("timeout awaiting the answer")
	}
	return v, err
}

// testLostAnswer: a renewal or a release that the store committed but
// whose answer was lost is the holder's own: the next Renew or Release
// goes on from it instead of calling the lease lost.
func testLostAnswer(t *testing.T, objs store.Objects) {
	c := newClock()
	f := &forgetful{Objects: objs}
	a, b := newManager(t, f, c), newManager(t, objs, c)
	la := acquire(t, a, "db/core/x86_64", "node-a")
	f.armed.Store(true)
	if err := la.Renew(t.Context()); err == nil || errors.Is(err, lease.ErrLost) {
		t.Fatalf("Renew with its answer lost = %v, want an error, not ErrLost", err)
	}
	if err := la.Renew(t.Context()); err != nil {
		t.Fatalf("Renew after a renewal whose answer was lost = %v", err)
	}
	wantHeld(t, b, "db/core/x86_64", "node-b", "node-a")
	f.armed.Store(true)
	if err := la.Release(t.Context()); err == nil || errors.Is(err, lease.ErrLost) {
		t.Fatalf("Release with its answer lost = %v, want an error, not ErrLost", err)
	}
	if err := la.Release(t.Context()); err != nil {
		t.Fatalf("Release after a release whose answer was lost = %v", err)
	}
	if l := acquire(t, b, "db/core/x86_64", "node-b"); l.Token() != 2 {
		t.Errorf("token after the release: %d, want 2", l.Token())
	}
}

// watched passes the calls through, and reports each PutIfMatch that
// succeeded (a renewal) on renewed until quiet is closed; failing, when
// set, makes PutIfMatch fail as a store that does not answer.
type watched struct {
	lease.Objects
	renewed chan struct{}
	quiet   chan struct{}
	failing atomic.Bool
}

func newWatched(objs lease.Objects) *watched {
	return &watched{Objects: objs, renewed: make(chan struct{}), quiet: make(chan struct{})}
}

func (w *watched) PutIfMatch(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, version string) (string, error) {
	if w.failing.Load() {
		return "", errors.New("store unreachable")
	}
	v, err := w.Objects.PutIfMatch(ctx, key, r, meta, version)
	if err == nil {
		select {
		case w.renewed <- struct{}{}:
		case <-w.quiet:
		case <-ctx.Done():
		}
	}
	return v, err
}

// runFn is a Run function that reports it started and its token, and
// returns its context's cause once the context ends, or nil once done
// is closed.
type runFn struct {
	started chan uint64
	done    chan struct{}
	ended   chan error // the cause it saw
}

func newRunFn() *runFn {
	return &runFn{started: make(chan uint64, 1), done: make(chan struct{}), ended: make(chan error, 1)}
}

func (f *runFn) fn(ctx context.Context, token uint64) error {
	f.started <- token
	select {
	case <-ctx.Done():
		f.ended <- context.Cause(ctx)
		return ctx.Err()
	case <-f.done:
		f.ended <- nil
		return nil
	}
}

// wait is what the function saw end it.
func (f *runFn) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run's function still running after 10s")
		return nil
	}
}

// testRunRenews: Run keeps the lease while its function runs, renewing it
// in the background, and releases it when the function returns.
func testRunRenews(t *testing.T, objs store.Objects) {
	c := newClock()
	w := newWatched(objs)
	a, b := newManager(t, w, c), newManager(t, objs, c)
	f := newRunFn()
	ran := make(chan error, 1)
	go func() { ran <- a.Run(t.Context(), "db/core/x86_64", "node-a", ttl, f.fn) }()
	if tok := <-f.started; tok != 1 {
		t.Errorf("Run's token = %d, want 1", tok)
	}
	for range 4 {
		// A renewal reads the clock after the last move but one (the
		// one before it returned, which waits for this receive), so
		// after this move the lease has at least ttl/3 left.
		select {
		case <-w.renewed:
		case err := <-f.ended:
			t.Fatalf("Run's function ended: %v", err)
		}
		c.Advance(ttl / 3)
		wantHeld(t, b, "db/core/x86_64", "node-b", "node-a")
	}
	close(w.quiet)
	close(f.done)
	if err := f.wait(t); err != nil {
		t.Errorf("Run's function ended by %v, want by itself", err)
	}
	if err := <-ran; err != nil {
		t.Errorf("Run = %v", err)
	}
	if l := acquire(t, b, "db/core/x86_64", "node-b"); l.Token() != 2 {
		t.Errorf("token after Run: %d, want 2", l.Token())
	}
}

// testRunLosesToTakeover: node-b, whose clock is past the lease's expiry
// (node-a's is not: it was paused, or its clock is slow), takes the lease
// over; node-a's next renewal finds it, and Run cancels the function.
func testRunLosesToTakeover(t *testing.T, objs store.Objects) {
	ca, cb := newClock(), newClock()
	a, b := newManager(t, objs, ca), newManager(t, objs, cb)
	f := newRunFn()
	ran := make(chan error, 1)
	go func() { ran <- a.Run(t.Context(), "jobs/9", "node-a", ttl, f.fn) }()
	<-f.started
	cb.Advance(ttl + skew + time.Millisecond)
	var lb *lease.Lease
	for lb == nil {
		// node-a's renewals move the lease's version meanwhile, but not
		// its expiry past node-b's clock: Acquire wins within a few.
		var err error
		lb, err = b.Acquire(t.Context(), "jobs/9", "node-b", ttl)
		if err != nil && !errors.Is(err, lease.ErrHeld) {
			t.Fatal(err)
		}
	}
	cause := f.wait(t)
	if !errors.Is(cause, lease.ErrLost) || !strings.Contains(cause.Error(), "taken by node-b") {
		t.Errorf("Run's function ended by %v, want ErrLost to node-b", cause)
	}
	if err := <-ran; !errors.Is(err, lease.ErrLost) {
		t.Errorf("Run = %v, want ErrLost", err)
	}
	if err := lb.Renew(t.Context()); err != nil {
		t.Errorf("node-b's Renew after Run ended = %v (Run must not release a lease it lost)", err)
	}
}

// testRunLosesAtExpiry: while the store does not answer, the lease
// reaches its expiry by node-a's clock, and Run cancels the function then,
// before any other node may take it.
func testRunLosesAtExpiry(t *testing.T, objs store.Objects) {
	c := newClock()
	w := newWatched(objs)
	close(w.quiet)
	a := newManager(t, w, c)
	f := newRunFn()
	ran := make(chan error, 1)
	go func() { ran <- a.Run(t.Context(), "jobs/9", "node-a", ttl, f.fn) }()
	<-f.started
	w.failing.Store(true)
	c.Advance(ttl - time.Millisecond)
	select {
	case err := <-f.ended:
		t.Fatalf("Run's function ended before the lease expired: %v", err)
	default:
	}
	c.Advance(time.Millisecond)
	cause := f.wait(t)
	if !errors.Is(cause, lease.ErrLost) || !strings.Contains(cause.Error(), "not renewed before it expired") {
		t.Errorf("Run's function ended by %v, want ErrLost at expiry", cause)
	}
	if err := <-ran; !errors.Is(err, lease.ErrLost) {
		t.Errorf("Run = %v, want ErrLost", err)
	}
}

// testRunHeld: Run of a held lease is ErrHeld, and the function never
// runs.
func testRunHeld(t *testing.T, objs store.Objects) {
	c := newClock()
	a, b := newManager(t, objs, c), newManager(t, objs, c)
	acquire(t, a, "jobs/1", "node-a")
	err := b.Run(t.Context(), "jobs/1", "node-b", ttl, func(context.Context, uint64) error {
		t.Error("Run called its function for a held lease")
		return nil
	})
	if !errors.Is(err, lease.ErrHeld) {
		t.Errorf("Run = %v, want ErrHeld", err)
	}
}

// testRunInTurn: four holders run in turn under one lease: every one
// runs, never two at once.
func testRunInTurn(t *testing.T, objs store.Objects) {
	m := newManager(t, objs, nil)
	var running, most, ran atomic.Int32
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			err := m.RunInTurn(t.Context(), "turns", fmt.Sprintf("h%d", i), 10*time.Second, 10*time.Millisecond, func(ctx context.Context, _ uint64) error {
				n := running.Add(1)
				for {
					if old := most.Load(); n <= old || most.CompareAndSwap(old, n) {
						break
					}
				}
				time.Sleep(20 * time.Millisecond) // work that takes a while, for the others to find the lease held
				running.Add(-1)
				ran.Add(1)
				return nil
			})
			if err != nil {
				t.Errorf("RunInTurn h%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if ran.Load() != 4 || most.Load() != 1 {
		t.Errorf("%d of 4 ran, at most %d at once; want 4, 1", ran.Load(), most.Load())
	}
}

// testRunMetrics: Run shows the lease held while its function runs,
// counts the hold, and counts it lost when another node takes it over.
func testRunMetrics(t *testing.T, objs store.Objects) {
	reg := prometheus.NewRegistry()
	ca, cb := newClock(), newClock()
	a, err := lease.New(objs, lease.Options{Prefix: prefix, Skew: skew, Now: ca.Now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	b := newManager(t, objs, cb)
	want := func(when string, held, acquired, lost float64) {
		t.Helper()
		got := map[string]float64{}
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range families {
			for _, m := range mf.GetMetric() {
				if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != "jobs/9" {
					t.Errorf("%s %v: want the one label lease=jobs/9", mf.GetName(), m.GetLabel())
				}
				got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
		if got["mirrord_lease_held"] != held || got["mirrord_lease_acquired_total"] != acquired || got["mirrord_lease_lost_total"] != lost {
			t.Errorf("%s: metrics %v; want held %v, acquired %v, lost %v", when, got, held, acquired, lost)
		}
	}
	f := newRunFn()
	ran := make(chan error, 1)
	go func() { ran <- a.Run(t.Context(), "jobs/9", "node-a", ttl, f.fn) }()
	<-f.started
	want("while Run's function runs", 1, 1, 0)
	cb.Advance(ttl + skew + time.Millisecond)
	for {
		l, err := b.Acquire(t.Context(), "jobs/9", "node-b", ttl)
		if err != nil && !errors.Is(err, lease.ErrHeld) {
			t.Fatal(err)
		}
		if l != nil {
			break
		}
	}
	f.wait(t)
	if err := <-ran; !errors.Is(err, lease.ErrLost) {
		t.Errorf("Run = %v, want ErrLost", err)
	}
	want("after the takeover", 0, 1, 1)
}
