package lockfree

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// FillFunc fetches the file of a flight. It runs in its own goroutine on a
// context detached from every caller (see Group.Do), calls f.Begin once it
// has a file and the response metadata, then f.Write for each chunk. Its
// return value ends the flight: nil means the written bytes are the whole
// file, an error is what every reader gets after the bytes written so far.
//
// A fill that finds the file already cached may return nil without calling
// Begin: readers then get ErrNoFile and read the cache instead.
type FillFunc func(ctx context.Context, f *Flight) error

// Group is a registry of flights keyed by the file's tree path. The zero
// value is ready to use; a Group must not be copied after first use.
type Group struct {
	// flights maps a key to its *Flight while the fill runs. Do inserts with
	// LoadOrStore; only the flight's own goroutine removes it, with
	// CompareAndDelete, so an old flight never removes a newer one.
	flights sync.Map
	// n counts the flights in the map, for a gauge: Do adds, the end of a
	// flight subtracts.
	n atomic.Int64
}

// Do joins the flight for key or, if there is none, starts one that runs
// fill in a new goroutine and reports leader = true.
//
// The fill's context is context.WithoutCancel(ctx): it keeps ctx's values
// (logger, trace) but not its deadline or cancellation, so the first client
// hanging up does not break the transfer for the others or for the cache.
// Only Flight.Abort cancels it; a fill wants its own timeout (a stall
// watchdog) on top, which it adds itself.
//
// A caller checks its cache before Do, and the fill should check it again:
// between the caller's miss and Do, an earlier flight for the same key can
// finish, store the file and leave the registry, so Do starts a second
// flight for a file that is already cached. Checking inside the fill closes
// that window, because a flight that has left the registry has stored its
// file first (groupcache's load does the same). Such a fill returns nil
// without Begin, and the callers' readers get ErrNoFile.
//
// Joining costs one sync.Map load and no allocation when the key is in
// flight; ctx is not used by a caller that joins.
func (g *Group) Do(ctx context.Context, key string, fill FillFunc) (f *Flight, leader bool) {
	f, _, leader = g.do(ctx, key, fill, false)
	return f, leader
}

// Join is Do followed by Flight.Join: it returns the flight for key with
// a reader of it, which keeps the flight from being abandoned until the
// reader is closed. It never returns an abandoned flight.
//
// A leader's reader exists before its flight is published, so the leader
// reads the file its own fill writes, however soon the fill ends, and no
// other caller can abandon the flight before the leader holds it. (Do and
// then Flight.Join would leave a window between the two in which the fill
// can return and let go of its file, so that the leader's reader gets
// ErrNoFile, or in which a passing reader joins, leaves and abandons it.)
func (g *Group) Join(ctx context.Context, key string, fill FillFunc) (f *Flight, r *Reader, leader bool) {
	for {
		f, r, leader = g.do(ctx, key, fill, true)
		if leader {
			return f, r, true
		}
		var ok bool
		if r, ok = f.Join(ctx); ok {
			return f, r, false
		}
		// Abandoned between Load and Join: it has left the registry already.
	}
}

// do is Do, and with join also makes the leader's reader before the
// flight is published; r is nil unless leader.
func (g *Group) do(ctx context.Context, key string, fill FillFunc, join bool) (f *Flight, r *Reader, leader bool) {
	if v, ok := g.flights.Load(key); ok {
		return v.(*Flight), nil, false
	}
	fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	f = newFlight(key, cancel)
	if join {
		// Nobody else sees f yet: plain stores, then LoadOrStore publishes.
		f.readers.Store(1)
		f.refs.Add(1)
		r = &Reader{f: f, ctx: ctx, held: true}
	}
	if v, loaded := g.flights.LoadOrStore(key, f); loaded {
		cancel(nil) // lost the race: this flight was never published
		return v.(*Flight), nil, false
	}
	g.n.Add(1)
	go g.run(fctx, f, fill)
	return f, r, true
}

// abandoned is a Flight's readers count once Abandon took it: so negative
// that readers joining through NewReader never bring it back to zero.
const abandoned = math.MinInt64 / 2

// Abandon aborts f's fill with err (ErrAborted if nil) if f has no reader,
// and reports whether it did. It is atomic with Flight.Join: a reader
// joining at the same moment either keeps the flight going or finds it
// abandoned and starts another (see Join), never a flight that aborts
// under it. An abandoned flight leaves the registry at once.
func (g *Group) Abandon(f *Flight, err error) bool {
	if !f.readers.CompareAndSwap(0, abandoned) {
		return false
	}
	g.flights.CompareAndDelete(f.key, f)
	f.Abort(err)
	return true
}

// Lookup returns the flight in progress for key, or nil.
func (g *Group) Lookup(key string) *Flight {
	if v, ok := g.flights.Load(key); ok {
		return v.(*Flight)
	}
	return nil
}

// Len returns the number of flights in progress (an atomic load).
func (g *Group) Len() int {
	return int(g.n.Load())
}

// Range calls fn for each flight in progress until fn returns false, for a
// status page or for aborting every fill at shutdown. Like sync.Map.Range it
// sees no consistent snapshot: flights may start or end meanwhile.
func (g *Group) Range(fn func(key string, f *Flight) bool) {
	g.flights.Range(func(k, v any) bool {
		return fn(k.(string), v.(*Flight))
	})
}

// errGoexit is the flight's error when the fill called runtime.Goexit (for
// example t.FailNow in a test) instead of returning.
var errGoexit = errors.New("lockfree: fill called runtime.Goexit")

// PanicError is the error readers get when the fill panicked, so that a
// bug in one fill reaches every waiter instead of leaving them hanging and
// does not take the daemon down. Stack is the fill goroutine's stack.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("lockfree: fill panicked: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// run is the flight's goroutine: it exits when fill returns, panics or calls
// runtime.Goexit, after ending the flight in each case.
func (g *Group) run(ctx context.Context, f *Flight, fill FillFunc) {
	err := errGoexit // stays if fill never returns normally nor panics
	defer func() {
		g.flights.CompareAndDelete(f.key, f)
		g.n.Add(-1)
		f.finish(ctx, err)
	}()
	err = callFill(ctx, f, fill)
}

func callFill(ctx context.Context, f *Flight, fill FillFunc) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fill(ctx, f)
}
