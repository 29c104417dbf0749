package lease

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/internal/store"
)

// Objects is what leases need of store.Objects.
type Objects interface {
	Get(ctx context.Context, key string) (io.ReadCloser, store.ObjectMeta, error)
	PutIfAbsent(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error
	PutIfMatch(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, version string) (string, error)
}

var (
	// ErrHeld is an Acquire (or Run) of a lease another holder has.
	ErrHeld = errors.New("lease held")
	// ErrLost is a lease that is no longer its holder's: taken over
	// after it expired, not renewed in time, or released.
	ErrLost = errors.New("lease lost")
)

// DefaultSkew is Options.Skew when unset.
const DefaultSkew = time.Second

// Options configures New.
type Options struct {
	// Prefix is the folder of keys the lease objects live in
	// ("_mirrord/leases/"): a lease named "db/core/x86_64" is the object
	// {Prefix}db/core/x86_64. Required, so that leases do not mix with
	// the tree.
	Prefix string
	// Skew is the most that any two nodes' clocks may differ by: a
	// lease is taken over only once it has been expired for Skew by the
	// taker's clock, so its holder's clock has reached its expiry too
	// and it has stopped (Run cancels its function then). Default
	// DefaultSkew.
	Skew time.Duration
	// Now is the clock (tests); default time.Now. Only expiry is judged
	// by it: Run's renewals are paced by real time.
	Now func() time.Time
	// Registerer takes the metrics of Run's holds (mirrord_lease_*); nil
	// registers none.
	Registerer prometheus.Registerer
}

// Manager takes and keeps leases in one Objects. Its methods are safe for
// concurrent use, by as many managers over the same objects as there are
// nodes.
type Manager struct {
	objs   Objects
	prefix string
	skew   time.Duration
	now    func() time.Time
	stats  *metrics
}

// New checks opts and returns a Manager; it does not touch the objects.
func New(objs Objects, opts Options) (*Manager, error) {
	if opts.Prefix == "" {
		return nil, errors.New("lease prefix: empty")
	}
	if err := store.CleanPath(opts.Prefix + "x"); err != nil {
		return nil, fmt.Errorf("lease prefix %q: %w", opts.Prefix, err)
	}
	if opts.Skew < 0 {
		return nil, fmt.Errorf("lease skew %v: negative", opts.Skew)
	}
	m := &Manager{objs: objs, prefix: opts.Prefix, skew: opts.Skew, now: opts.Now, stats: newMetrics(opts.Registerer)}
	if m.skew == 0 {
		m.skew = DefaultSkew
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// record is a lease object's JSON.
type record struct {
	Holder string `json:"holder"`
	// Token is the fencing token: one more than the last holder's.
	Token uint64 `json:"token"`
	// Expires is when the holder stops counting the lease as its own,
	// by its clock; zero once released.
	Expires  time.Time `json:"expires,omitzero"`
	Released bool      `json:"released,omitempty"`
	// Write is fresh for every write, so that no two writes have the
	// same bytes, and so none has another's version (S3's is the MD5 of
	// the bytes): a holder's renewal can never match a version that
	// another writer has replaced and a third has put back.
	Write string `json:"write"`
}

// live reports whether r is held at now, by a clock that may be up to
// skew ahead of the holder's.
func (r record) live(now time.Time, skew time.Duration) bool {
	return !r.Released && !now.After(r.Expires.Add(skew))
}

// maxRecord bounds a lease object read back: ours are under 300 bytes.
const maxRecord = 4 << 10

// read is the lease object at key and its version.
func (m *Manager) read(ctx context.Context, key string) (record, string, error) {
	r, meta, err := m.objs.Get(ctx, key)
	if err != nil {
		return record{}, "", err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxRecord+1))
	if err != nil {
		return record{}, "", fmt.Errorf("read %s: %w", key, err)
	}
	var rec record
	if len(b) > maxRecord {
		return record{}, "", fmt.Errorf("read %s: over %d bytes: not a lease", key, maxRecord)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return record{}, "", fmt.Errorf("read %s: not a lease: %w", key, err)
	}
	if rec.Holder == "" || rec.Token == 0 || rec.Write == "" {
		return record{}, "", fmt.Errorf("read %s: not a lease: no holder, token or write id", key)
	}
	return rec, meta.Version, nil
}

// body is rec's bytes and their metadata, with a fresh write id.
func body(rec record) ([]byte, store.ObjectMeta, record) {
	var id [8]byte
	rand.Read(id[:])
	rec.Write = hex.EncodeToString(id[:])
	b, err := json.Marshal(rec)
	if err != nil {
		panic(err) // a record always marshals
	}
	return b, store.BytesMeta(b), rec
}

// attempts bounds Acquire's rounds of read and conditional write: each
// round that loses means another writer changed the lease meanwhile.
const attempts = 4

// Acquire takes the lease name for holder for ttl, if no other holder has
// it (ErrHeld otherwise, naming the holder and until when). A lease whose
// holder let it expire (by this node's clock, Skew past its expiry) or
// released it is taken over. The same holder name does not make a lease
// one's own: a second Acquire of a held lease is ErrHeld whoever asks.
//
// The holder keeps it by Renew before Expires, or by Run, which does.
func (m *Manager) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (*Lease, error) {
	key := m.prefix + name
	if err := store.CleanPath(key); err != nil {
		return nil, fmt.Errorf("acquire lease %q for %s: %w", name, holder, err)
	}
	if holder == "" {
		return nil, fmt.Errorf("acquire lease %s: no holder", name)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("acquire lease %s for %s: ttl %v", name, holder, ttl)
	}
	for range attempts {
		cur, version, err := m.read(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			l, err := m.create(ctx, name, key, holder, ttl)
			if errors.Is(err, store.ErrExists) {
				continue // another came first: look at what it wrote
			}
			if err != nil {
				return nil, fmt.Errorf("acquire lease %s for %s: %w", name, holder, err)
			}
			if l == nil {
				continue
			}
			return l, nil
		}
		if err != nil {
			return nil, fmt.Errorf("acquire lease %s for %s: %w", name, holder, err)
		}
		now := m.now()
		if cur.live(now, m.skew) {
			return nil, fmt.Errorf("acquire lease %s for %s: held by %s until %s: %w", name, holder, cur.Holder, cur.Expires.Format(time.RFC3339Nano), ErrHeld)
		}
		b, meta, rec := body(record{Holder: holder, Token: cur.Token + 1, Expires: now.Add(ttl)})
		v, err := m.objs.PutIfMatch(ctx, key, bytes.NewReader(b), meta, version)
		if errors.Is(err, store.ErrVersionMismatch) {
			continue // another took it or renewed it meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("acquire lease %s for %s: %w", name, holder, err)
		}
		return m.lease(name, key, ttl, rec, v), nil
	}
	return nil, fmt.Errorf("acquire lease %s for %s: %d rounds lost to other writers: %w", name, holder, attempts, ErrHeld)
}

// create makes the lease object at key, which had none. PutIfAbsent does
// not tell the version it stored, so it is read back: if what is there
// then is not this write (another took the lease over in between, which
// it may only once ttl has passed), create returns nil and no error.
func (m *Manager) create(ctx context.Context, name, key, holder string, ttl time.Duration) (*Lease, error) {
	b, meta, rec := body(record{Holder: holder, Token: 1, Expires: m.now().Add(ttl)})
	if err := m.objs.PutIfAbsent(ctx, key, bytes.NewReader(b), meta); err != nil {
		return nil, err
	}
	got, v, err := m.read(ctx, key)
	if errors.Is(err, store.ErrNotFound) || err == nil && got.Write != rec.Write {
		return nil, nil
	}
	if err != nil {
		// Taken, but its version unknown: it expires unrenewed.
		return nil, fmt.Errorf("read back: %w", err)
	}
	return m.lease(name, key, ttl, rec, v), nil
}

func (m *Manager) lease(name, key string, ttl time.Duration, rec record, version string) *Lease {
	return &Lease{m: m, name: name, key: key, holder: rec.Holder, ttl: ttl, token: rec.Token, version: version, expires: rec.Expires}
}

// Lease is one holder's hold of a lease, from Acquire. Its methods are
// safe for concurrent use; Renew and Release go one at a time.
type Lease struct {
	m      *Manager
	name   string
	key    string
	holder string
	ttl    time.Duration
	token  uint64

	// mu is held across Renew's and Release's writes, so that they do not
	// race each other with the same version (the loser would think the
	// lease lost).
	mu      sync.Mutex
	version string    // the lease object's, as this holder last wrote it; under mu
	expires time.Time // of the last write, by this node's clock; under mu
	ended   error     // once lost (wraps ErrLost) or released; under mu
	// released is whether Release ended it; under mu.
	released bool
}

// Name is the lease's name, Holder its holder.
func (l *Lease) Name() string   { return l.name }
func (l *Lease) Holder() string { return l.holder }

// Token is the fencing token of this hold: 1 for a lease's first holder,
// one more for each holder after (a lease object is never deleted, so it
// never goes back). Write it with whatever the lease guards, so that a
// write from a holder paused past its expiry, which carries a lower one,
// can be refused.
func (l *Lease) Token() uint64 { return l.token }

// Expires is when this holder stops counting the lease as its own, by its
// clock, unless it renews it first.
func (l *Lease) Expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.expires
}

// Renew extends the lease to ttl from now. It fails with ErrLost (naming
// the new holder, when it can tell) if another writer has changed the
// lease object since this holder's last write: it was taken over after it
// expired. A lease that expired but that no one took is still this
// holder's, and Renew keeps it. Any other error (the store did not
// answer) leaves the lease as it was: renew again before it expires.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended != nil {
		return l.ended
	}
	rec, v, err := l.writeLocked(ctx, record{Holder: l.holder, Token: l.token, Expires: l.m.now().Add(l.ttl)})
	if errors.Is(err, store.ErrVersionMismatch) {
		l.ended = l.lostLocked(ctx, "renew")
		return l.ended
	}
	if err != nil {
		return fmt.Errorf("renew lease %s of %s: %w", l.name, l.holder, err)
	}
	l.version, l.expires = v, rec.Expires
	return nil
}

// Release gives the lease up, so that the next Acquire takes it at once.
// A lease already lost is ErrLost; one released already, nil. On any
// other error the lease stays this holder's until it expires.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return nil
	}
	if l.ended != nil {
		return l.ended
	}
	_, _, err := l.writeLocked(ctx, record{Holder: l.holder, Token: l.token, Released: true})
	if errors.Is(err, store.ErrVersionMismatch) {
		l.ended = l.lostLocked(ctx, "release")
		return l.ended
	}
	if err != nil {
		return fmt.Errorf("release lease %s of %s: %w", l.name, l.holder, err)
	}
	l.released = true
	l.ended = fmt.Errorf("lease %s of %s: released: %w", l.name, l.holder, ErrLost)
	return nil
}

// writeLocked replaces the lease object with rec if it is still this
// holder's last write, and returns what it wrote and its version. A write
// of this holder's whose answer was lost (the store committed it, then
// the request timed out) is this holder's too: it is found by its token,
// which no other hold has, and written over, or, for a release, taken as
// done.
func (l *Lease) writeLocked(ctx context.Context, rec record) (record, string, error) {
	for range 2 {
		b, meta, out := body(rec)
		v, err := l.m.objs.PutIfMatch(ctx, l.key, bytes.NewReader(b), meta, l.version)
		if !errors.Is(err, store.ErrVersionMismatch) {
			return out, v, err
		}
		cur, cv, rerr := l.m.read(ctx, l.key)
		if rerr != nil || cur.Token != l.token || cur.Holder != l.holder || cur.Released && !rec.Released {
			return record{}, "", err
		}
		if cur.Released {
			return cur, cv, nil // an earlier Release of ours
		}
		l.version = cv // an earlier renewal of ours
	}
	return record{}, "", store.ErrVersionMismatch
}

// lostLocked is the ErrLost of a write that found another version, naming
// who has the lease now if a read can tell.
func (l *Lease) lostLocked(ctx context.Context, op string) error {
	cur, _, err := l.m.read(ctx, l.key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%s lease %s of %s: its object is gone: %w", op, l.name, l.holder, ErrLost)
	case err != nil:
		return fmt.Errorf("%s lease %s of %s: another writer came first: %w", op, l.name, l.holder, ErrLost)
	case cur.Released:
		return fmt.Errorf("%s lease %s of %s: released by %s (token %d): %w", op, l.name, l.holder, cur.Holder, cur.Token, ErrLost)
	}
	return fmt.Errorf("%s lease %s of %s: taken by %s (token %d): %w", op, l.name, l.holder, cur.Holder, cur.Token, ErrLost)
}

// Run acquires the lease name for holder and runs fn while holding it,
// with the lease's fencing token. In the background it renews the lease
// every ttl/3 (of real time), and more often after a failure; fn's
// context is cancelled, with a cause that wraps ErrLost, the moment the
// lease is lost: a renewal finds it taken over, or the lease reaches its
// expiry by this node's clock without a renewal. fn should then stop
// what the lease guards at once. When fn returns the lease is released
// (on a context that outlives ctx, for up to ttl).
//
// Run returns Acquire's error (ErrHeld) without calling fn; else fn's
// error, joined with the loss (errors.Is(err, ErrLost)) or with the
// release's error. The renewing goroutine has exited when Run returns.
func (m *Manager) Run(ctx context.Context, name, holder string, ttl time.Duration, fn func(ctx context.Context, token uint64) error) error {
	l, err := m.Acquire(ctx, name, holder, ttl)
	if err != nil {
		return err
	}
	m.stats.acquired.WithLabelValues(name).Inc()
	m.stats.lost.WithLabelValues(name) // shown as 0 until a loss
	held := m.stats.held.WithLabelValues(name)
	held.Set(1)
	defer held.Set(0)
	fnCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		l.keep(fnCtx, stop, cancel)
	}()
	fnErr := fn(fnCtx, l.token)
	close(stop)
	<-kept
	if cause := context.Cause(fnCtx); errors.Is(cause, ErrLost) {
		m.stats.lost.WithLabelValues(name).Inc()
		return errors.Join(fnErr, cause)
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
	defer rcancel()
	return errors.Join(fnErr, l.Release(rctx))
}

// keep renews l until stop is closed or ctx ends, and calls lost with the
// loss when l is lost. Each renewal may take until l expires.
func (l *Lease) keep(ctx context.Context, stop <-chan struct{}, lost context.CancelCauseFunc) {
	interval := l.ttl / 3
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		left := l.Expires().Sub(l.m.now())
		if left <= 0 {
			lost(fmt.Errorf("lease %s of %s: not renewed before it expired at %s: %w", l.name, l.holder, l.Expires().Format(time.RFC3339Nano), ErrLost))
			return
		}
		rctx, cancel := context.WithTimeout(ctx, left)
		err := l.Renew(rctx)
		cancel()
		switch {
		case err == nil:
			timer.Reset(interval)
		case errors.Is(err, ErrLost):
			lost(err)
			return
		default:
			// The store failed or did not answer in time: try again
			// soon, and look again no later than the expiry.
			left := l.Expires().Sub(l.m.now())
			if left <= 0 {
				lost(fmt.Errorf("lease %s of %s: not renewed before it expired at %s (%v): %w", l.name, l.holder, l.Expires().Format(time.RFC3339Nano), err, ErrLost))
				return
			}
			timer.Reset(min(interval/4, left))
		}
	}
}

// RunInTurn is Run that waits its turn: while another holder has the
// lease it asks again every poll (a bucket has no way to say when a lease
// is released), until ctx ends.
func (m *Manager) RunInTurn(ctx context.Context, name, holder string, ttl, poll time.Duration, fn func(ctx context.Context, token uint64) error) error {
	for {
		err := m.Run(ctx, name, holder, ttl, fn)
		if !errors.Is(err, ErrHeld) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}
