package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/internal/catalog"
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

// Job is one file to bring into the tree. Its fields are facts of the
// file, the same whoever asks for it, because the flight runs the first
// caller's Job and every later caller joins it (lockfree.Group.Do). What
// the file must be is not a field: the fill asks the catalog, so a file is
// verified against the same database whoever came first.
type Job struct {
	Rel     string // tree path, the flight's key
	Repo    string // "distro/repo", the metrics label
	Mirrors *upstream.MirrorSet
	Request upstream.Request
	// MaxAge > 0 marks a mutable file (only the proxy fetches those
	// through flights; the sync stages its databases itself): a cached
	// copy younger than MaxAge is kept, an older one is revalidated with
	// its validators. With MaxAge 0 a cached copy is final (immutable
	// files).
	MaxAge time.Duration
	// Batch, if set, commits the file through it: in the tree at once,
	// durable and recorded only at the batch's Flush. Only the sync sets
	// it, and only for files of mirror repos, whose sync hashes any file
	// it finds unrecorded before trusting it; a caller that joins such a
	// flight gets the file in the tree as soon as it is checked, as from
	// any flight. Nil makes the file durable before the flight ends.
	Batch *store.Batch
	// Limit, if set, paces the transfer: every chunk read from upstream
	// waits for as many bytes of its budget (the sync's
	// sync.max_bandwidth, shared by all of a sync's transfers). Whoever
	// joins the flight then reads at that pace too.
	Limit Limiter
}

// JobFor is the Job for t from ms as a client's request makes it (the
// proxy's misses and revalidations, and the prefetch, whose flights a
// client joins): one constructor, so that such a flight is the same
// whoever starts it. dbMaxAge is cache.db_max_age, the MaxAge of a
// mutable file.
func JobFor(t catalog.Target, ms *upstream.MirrorSet, dbMaxAge time.Duration) Job {
	j := Job{
		Rel:     t.Rel,
		Repo:    t.Distro + "/" + t.Repo,
		Mirrors: ms,
		Request: upstream.Request{Repo: t.Repo, Arch: t.Arch, File: t.File, Resumable: !t.Mutable()},
	}
	if t.Mutable() {
		j.MaxAge = dbMaxAge
	}
	return j
}

// Limiter is a byte budget over time (golang.org/x/time/rate.Limiter).
type Limiter interface {
	WaitN(ctx context.Context, n int) error
	Burst() int
}

// Fetcher runs Jobs. Its zero value is not usable: use New.
type Fetcher struct {
	store   *store.Store
	catalog *catalog.Catalog
	flights lockfree.Group
	log     *slog.Logger
	fetched *prometheus.CounterVec
	// total is fetched summed over repos, added with it by every fill
	// that commits, for FetchedBytes.
	total atomic.Int64

	owners        Owners            // nil: no cluster
	shared        Shared            // nil: no shared storage
	sharing       stdsync.WaitGroup // uploads to shared in progress (share)
	shareSlots    chan struct{}     // bounds them
	pendingShares atomic.Int64      // uploads started and not done
	sharingFiles  stdsync.Map       // tree path -> true while its upload runs
	shareBackoff  atomic.Int64      // unix ns: no upload starts before (one failed)
	// bg is the context of work that outlives a flight (uploads,
	// deletes), cancelled by Shutdown when its ctx ends.
	bg           context.Context
	cancelBg     context.CancelFunc
	stallTimeout time.Duration
	shares       prometheus.Counter     // files this node put into shared
	fromStore    *prometheus.CounterVec // files brought from shared instead of upstream
	fromPeers    *prometheus.CounterVec // files brought from their owner node
}

// Options configures New.
type Options struct {
	// Catalog's databases verify what is fetched; nil checks lengths only.
	Catalog *catalog.Catalog
	// Owners, if set, is the cluster (internal/cluster): an immutable
	// file that another node owns is fetched from it.
	Owners Owners
	// StallTimeout cuts a fill from the owner or the shared storage that
	// sends nothing for this long, as upstream.stall_timeout does an
	// upstream's; default 8s.
	StallTimeout time.Duration
	// Shared, if set, is the cluster's shared storage: an immutable file
	// missing from the tree is brought from it before any upstream is
	// asked, and one fetched upstream is put there (see Shared).
	Shared     Shared
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// New returns a Fetcher over st with its own registry of flights: one
// Fetcher per process, shared by the proxy and the sync, so that there
// is one download per file.
func New(st *store.Store, opts Options) *Fetcher {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	f := &Fetcher{store: st, catalog: opts.Catalog, log: opts.Logger, fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrord_fetched_bytes_total",
		Help: "Bytes fetched from upstream and stored in the tree, by repo.",
	}, []string{"repo"})}
	f.shared, f.owners = opts.Shared, opts.Owners
	f.shareSlots = make(chan struct{}, shareConcurrency)
	f.bg, f.cancelBg = context.WithCancel(context.Background())
	f.stallTimeout = opts.StallTimeout
	if f.stallTimeout <= 0 {
		f.stallTimeout = 8 * time.Second
	}
	f.shares = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mirrord_storage_shared_files_total",
		Help: "Files this node fetched upstream and put into the shared storage.",
	})
	f.fromStore = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrord_storage_filled_files_total",
		Help: "Files brought into the tree from the shared storage instead of upstream, by repo.",
	}, []string{"repo"})
	f.fromPeers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrord_peer_filled_files_total",
		Help: "Files brought into the tree from the node that owns them, by repo.",
	}, []string{"repo"})
	if reg != nil {
		reg.MustRegister(f.fetched)
		if f.shared != nil {
			reg.MustRegister(f.shares, f.fromStore)
		}
		if f.owners != nil {
			reg.MustRegister(f.fromPeers)
		}
	}
	return f
}

// Shares reports whether the Fetcher has a shared storage to fill from:
// then a file of a repo with no upstream (a hosted repo of a cluster)
// may be fetched too, from there alone (a nil Job.Mirrors).
func (f *Fetcher) Shares() bool { return f.shared != nil }

// shareConcurrency bounds the uploads to the shared storage in progress.
const shareConcurrency = 4

// Flights is the registry the Fetcher starts its flights in.
func (f *Fetcher) Flights() *lockfree.Group { return &f.flights }

// Shutdown aborts every fill in progress and waits for them to end, then
// for the uploads to the shared storage, until ctx ends (then the uploads
// are cut, and waited for), so that the store can close under no writer
// and no reader. Call it once,
// when no new caller comes: after the server has drained and the sync's
// context has ended (a sync waiting on a flight then sees it fail).
func (f *Fetcher) Shutdown(ctx context.Context) error {
	var flights []*lockfree.Flight
	f.flights.Range(func(_ string, fl *lockfree.Flight) bool {
		fl.Abort(errShutdown)
		flights = append(flights, fl)
		return true
	})
	for _, fl := range flights {
		select {
		case <-fl.Done():
		case <-ctx.Done():
			f.cancelBg()
			f.sharing.Wait() // uploads end when their context does
			return ctx.Err()
		}
	}
	// Uploads to the shared storage finish while ctx lets them: a file
	// that does not get there is fetched upstream by the next node that
	// wants it.
	shared := make(chan struct{})
	go func() { f.sharing.Wait(); close(shared) }()
	select {
	case <-shared:
		return nil
	case <-ctx.Done():
		f.cancelBg()
		<-shared
		return ctx.Err()
	}
}

var errShutdown = errors.New("shutting down")

// FetchedBytes is mirrord_fetched_bytes_total summed over repos: the
// bytes fetched from upstream and committed to the tree since New.
func (f *Fetcher) FetchedBytes() int64 { return f.total.Load() }

// Label pre-creates the metrics of a repo at zero.
func (f *Fetcher) Label(repo string) {
	f.fetched.WithLabelValues(repo)
	f.fromStore.WithLabelValues(repo)
	f.fromPeers.WithLabelValues(repo)
}

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
	meta, err := f.store.Stat(job.Rel)
	if err == nil {
		// The caller missed, but a flight for this file may have ended
		// between its look and its Do: check again inside the flight.
		if job.MaxAge == 0 || time.Since(meta.FetchedAt) < job.MaxAge {
			return nil
		}
		req.IfModifiedSince = meta.LastModified
		req.IfNoneMatch = meta.ETag
	} else if job.MaxAge == 0 {
		// A file that never changes may be had nearer than upstream.
		if done, err := f.fillNearer(ctx, fl, job); done {
			return err
		}
	}
	if job.Mirrors == nil {
		// A hosted repo's file in a cluster: the shared storage is its
		// only source.
		return fmt.Errorf("%s: %w", job.Rel, upstream.ErrNotFound)
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
	return f.copyAndCommit(ctx, fl, job, resp, fromUpstream)
}

var bufPool = stdsync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// copyAndCommit streams resp into a temp file through the flight, checks
// it, and publishes it in the tree.
//
// The last chunk read is written to the flight only once the whole body is
// checked: a reader can never receive the final byte of a file that fails
// verification, so a bad transfer always looks broken to the client,
// never complete.
func (f *Fetcher) copyAndCommit(ctx context.Context, fl *lockfree.Flight, job Job, resp *upstream.Response, src source) error {
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

	var want catalog.Expect
	hasWant := false
	if f.catalog != nil {
		want, hasWant = f.catalog.Expect(job.Rel)
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
	m := store.Meta{SHA256: digest, ETag: resp.ETag, LastModified: lm, FetchedAt: time.Now(), Shared: src == fromShared}
	commit := f.store.Commit
	if job.Batch != nil {
		commit = job.Batch.Commit
	}
	if err := commit(tmp, job.Rel, m); err != nil {
		return err
	}
	committed = true
	switch {
	case src == fromShared:
		f.fromStore.WithLabelValues(job.Repo).Inc()
	case src == fromPeer:
		f.fromPeers.WithLabelValues(job.Repo).Inc()
	case job.Repo != "":
		f.fetched.WithLabelValues(job.Repo).Add(float64(n))
		f.total.Add(n)
	}
	// What came from upstream goes to the shared storage; what came from
	// the owner, the owner put there (its hits here check: Reshare).
	switch {
	case f.shared == nil || job.MaxAge != 0 || src != fromUpstream:
	case job.Batch != nil:
		// The sync's: put there before the sync moves on, so that the
		// next node to sync the repo (in turn, Options.Exclusive of
		// internal/sync) finds it there.
		ctx, cancel := context.WithTimeout(f.bg, shareTimeout)
		err := f.putShared(ctx, job.Rel, store.ObjectMeta{Size: n, SHA256: m.SHA256, ETag: m.ETag, LastModified: m.LastModified})
		cancel()
		if err != nil {
			f.log.Warn("share with the storage", "file", job.Rel, "err", err)
		}
	default:
		f.share(job.Rel, m, n)
	}
	f.committed(job)
	return nil
}

// committed applies what follows from a new copy of job.Rel in the tree:
// the catalog drops its parse of a database, and a new database (or any
// other mutable file) makes its cached .sig due for revalidation, so
// that pacman never gets a new db with the old one's signature.
func (f *Fetcher) committed(job Job) {
	if f.catalog != nil {
		f.catalog.Committed(job.Rel)
	}
	if job.MaxAge <= 0 || strings.HasSuffix(job.Rel, ".sig") {
		return
	}
	sig := job.Rel + ".sig"
	if m, err := f.store.Stat(sig); err == nil {
		m.FetchedAt = time.Time{}
		if err := f.store.SetMeta(sig, m); err != nil {
			f.log.Warn("expire cached signature", "file", sig, "err", err)
		}
	}
}
