package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/internal/lockfree"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

// fillTimeout bounds one fetch as a whole; stalls are caught much earlier
// by the upstream client's watchdog.
const fillTimeout = 2 * time.Hour

// ErrVerify is a body that does not match what it must be: its length, or
// the size and sha256 that the repo's database names.
var ErrVerify = errors.New("verification failed")

// Expect is what a database says of a package file.
type Expect struct {
	Size   int64
	SHA256 string // hex; "" when the database has none
}

// Job is one file to bring into the tree.
type Job struct {
	Rel     string // tree path, the flight's key
	Repo    string // "distro/repo", the metrics label
	Mirrors *upstream.MirrorSet
	Request upstream.Request
	// MaxAge > 0 marks a mutable file: a cached copy younger than MaxAge is
	// kept, an older one is revalidated with its validators. With MaxAge 0
	// a cached copy is final (immutable files).
	MaxAge time.Duration
	// Expect, if set, is asked inside the fill what the file must be.
	Expect func() (Expect, bool)
	// OnCommit, if set, runs after the file entered the tree.
	OnCommit func()
	// Listed says that the caller listed Rel's folder just before and
	// found no file: the fill then looks for one that another flight
	// committed since in the store's index only, not on disk (a miss on
	// disk walks the path). A file placed by hand meanwhile is fetched
	// again, which replaces it with the same bytes.
	Listed bool
	// Batch, if set, commits the file through it: in the tree at once,
	// durable and recorded only at the batch's Flush. For writers that
	// make a whole group durable before publishing it (the sync); nil
	// makes each file durable before the flight ends (the proxy).
	Batch *store.Batch
	// Limit, if set, paces the transfer: every chunk read from upstream
	// waits for as many bytes of its budget (the sync's
	// sync.max_bandwidth, shared by all of a sync's transfers). Whoever
	// joins the flight then reads at that pace too.
	Limit Limiter
}

// Limiter is a byte budget over time (golang.org/x/time/rate.Limiter).
type Limiter interface {
	WaitN(ctx context.Context, n int) error
	Burst() int
}

// Fetcher runs Jobs. Its zero value is not usable: use New.
type Fetcher struct {
	store   *store.Store
	flights *lockfree.Group
	fetched *prometheus.CounterVec
	// total is fetched summed over repos, added with it by every fill
	// that commits, for FetchedBytes.
	total atomic.Int64
}

// New returns a Fetcher over st and the shared flights registry.
func New(st *store.Store, flights *lockfree.Group, reg prometheus.Registerer) *Fetcher {
	f := &Fetcher{store: st, flights: flights, fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrord_fetched_bytes_total",
		Help: "Bytes fetched from upstream and stored in the tree, by repo.",
	}, []string{"repo"})}
	if reg != nil {
		reg.MustRegister(f.fetched)
	}
	return f
}

// Flights is the registry the Fetcher starts its flights in.
func (f *Fetcher) Flights() *lockfree.Group { return f.flights }

// FetchedBytes is mirrord_fetched_bytes_total summed over repos: the
// bytes fetched from upstream and committed to the tree since New.
func (f *Fetcher) FetchedBytes() int64 { return f.total.Load() }

// Label pre-creates the metrics of a repo at zero.
func (f *Fetcher) Label(repo string) { f.fetched.WithLabelValues(repo) }

// Join joins the flight for job.Rel or starts one, and returns it with a
// reader of it (see lockfree.Group.Join): while the reader is open, nobody
// can abandon the flight. Readers that get lockfree.ErrNoFile find the
// file in the tree: it was there (or was revalidated) already. ctx bounds
// the reader's waits, not the fetch.
func (f *Fetcher) Join(ctx context.Context, job Job) (*lockfree.Flight, *lockfree.Reader, bool) {
	return f.flights.Join(ctx, job.Rel, f.fillFunc(job))
}

func (f *Fetcher) fillFunc(job Job) lockfree.FillFunc {
	return func(ctx context.Context, fl *lockfree.Flight) error {
		ctx, cancel := context.WithTimeout(ctx, fillTimeout)
		defer cancel()
		return f.fill(ctx, fl, job)
	}
}

func (f *Fetcher) fill(ctx context.Context, fl *lockfree.Flight, job Job) error {
	req := job.Request
	var meta store.Meta
	var err error
	if job.Listed {
		if m, ok := f.store.Indexed(job.Rel); ok {
			meta = m
		} else {
			err = store.ErrNotFound
		}
	} else {
		meta, err = f.store.Stat(job.Rel)
	}
	if err == nil {
		// The caller missed, but a flight for this file may have ended
		// between its look and its Do: check again inside the flight.
		if job.MaxAge == 0 || time.Since(meta.FetchedAt) < job.MaxAge {
			return nil
		}
		req.IfModifiedSince = meta.LastModified
		req.IfNoneMatch = meta.ETag
	}
	resp, err := job.Mirrors.Fetch(ctx, req)
	if errors.Is(err, upstream.ErrNotModified) {
		meta.FetchedAt = time.Now()
		return f.store.SetMeta(job.Rel, meta) // readers serve the tree's copy
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return f.copyAndCommit(ctx, fl, job, resp)
}

var bufPool = stdsync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// copyAndCommit streams resp into a temp file through the flight, checks
// it, and publishes it in the tree.
//
// The last chunk read is written to the flight only once the whole body is
// checked: a reader can never receive the final byte of a file that fails
// verification, so a bad transfer always looks broken to the client,
// never complete.
func (f *Fetcher) copyAndCommit(ctx context.Context, fl *lockfree.Flight, job Job, resp *upstream.Response) error {
	var tmp *os.File
	var err error
	if job.Batch != nil {
		tmp, err = job.Batch.CreateTemp(job.Rel)
	} else {
		tmp, err = f.store.CreateTemp("fill-*")
	}
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmp.Name()) // readers keep their open descriptor
		}
	}()
	fl.Begin(tmp, lockfree.Meta{Size: resp.Size, ModTime: resp.LastModified, ETag: resp.ETag, Extra: resp.Mirror})

	var want Expect
	hasWant := false
	if job.Expect != nil {
		want, hasWant = job.Expect()
	}
	name := job.Request.File
	if hasWant && resp.Size >= 0 && resp.Size != want.Size {
		return fmt.Errorf("%w: %s from %s is %d bytes, the database says %d", ErrVerify, name, resp.Mirror, resp.Size, want.Size)
	}
	sum := sha256.New()
	bufA, bufB := bufPool.Get().(*[]byte), bufPool.Get().(*[]byte)
	defer bufPool.Put(bufA)
	defer bufPool.Put(bufB)
	var pending []byte // read and hashed, not yet handed to readers
	var n int64
	for {
		buf := *bufA
		if job.Limit != nil && job.Limit.Burst() < len(buf) {
			buf = buf[:job.Limit.Burst()]
		}
		m, rerr := resp.Body.Read(buf)
		if m > 0 && job.Limit != nil {
			if err := job.Limit.WaitN(ctx, m); err != nil {
				return err
			}
		}
		if m > 0 {
			sum.Write(buf[:m])
			n += int64(m)
			if pending != nil {
				if _, err := fl.Write(pending); err != nil {
					return err
				}
			}
			pending = buf[:m]
			bufA, bufB = bufB, bufA
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("fetch %s from %s: %w", name, resp.Mirror, rerr)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	switch {
	case resp.Size >= 0 && n != resp.Size:
		return fmt.Errorf("%w: %s from %s: got %d bytes, Content-Length %d", ErrVerify, name, resp.Mirror, n, resp.Size)
	case hasWant && n != want.Size:
		return fmt.Errorf("%w: %s from %s: got %d bytes, the database says %d", ErrVerify, name, resp.Mirror, n, want.Size)
	case hasWant && want.SHA256 != "" && digest != want.SHA256:
		return fmt.Errorf("%w: %s from %s: sha256 %s, the database says %s", ErrVerify, name, resp.Mirror, digest, want.SHA256)
	}
	if pending != nil {
		if _, err := fl.Write(pending); err != nil {
			return err
		}
	}
	lm := resp.LastModified
	if lm.IsZero() {
		lm = time.Now()
	}
	m := store.Meta{SHA256: digest, ETag: resp.ETag, LastModified: lm, FetchedAt: time.Now()}
	commit := f.store.Commit
	if job.Batch != nil {
		commit = job.Batch.Commit
	}
	if err := commit(tmp, job.Rel, m); err != nil {
		return err
	}
	committed = true
	if job.Repo != "" {
		f.fetched.WithLabelValues(job.Repo).Add(float64(n))
		f.total.Add(n)
	}
	if job.OnCommit != nil {
		job.OnCommit()
	}
	return nil
}
