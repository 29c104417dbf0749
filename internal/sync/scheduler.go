package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/lockfree"
	"github.com/mirrord/mirrord/internal/store"
)

// ErrUnknownRepo is a sync asked for a repo that is not a configured
// mirror-mode repo.
var ErrUnknownRepo = errors.New("not a mirror repo")

// DefaultInterval is the sync_interval of a mirror repo that sets none:
// Arch asks tier-2 mirrors to sync hourly at most.
const DefaultInterval = time.Hour

// KV keys, all under the "sync/" prefix of the store.
const (
	keyState = "sync/state/" // + distro/repo: the repo's State as JSON
	keyDB    = "sync/db/"    // + tree path of a db: sha256 of the copy the sync published
	keyUnref = "sync/unref/" // + tree path: unix time since when no db names the file
	keyNoSig = "sync/nosig/" // + tree path of a .sig that upstream does not have
	// + tree path of a repo folder whose upstream publishes no package
	// signatures (see probeSigs)
	keyUnsigned = "sync/unsigned/"
	// + tree path of a repo folder whose db was published before its
	// packages were copied (a node following the bucket), until they are
	keyCopying = "sync/copying/"
)

// Options configures New.
type Options struct {
	// Fetcher downloads packages; main shares it with the proxy so that a
	// client joins the sync's download and the sync reuses the proxy's
	// cached files. Nil: a private one.
	Fetcher    *fetch.Fetcher
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock for timestamps and pruning; default time.Now. Tests
	// inject one to prune without sleeping.
	Now func() time.Time
	// Exclusive, if set, runs fn while no other node runs a fn of the
	// same name, waiting its turn (a lease in the cluster's shared
	// storage): each sync of a repo is one, named "sync/{distro}/{repo}",
	// so that the nodes of a cluster sync it one after the other and
	// each after the first finds the files in the shared storage. Nil
	// runs fn at once.
	Exclusive func(ctx context.Context, name string, fn func(context.Context) error) error
	// Bucket, if set, is the storage a cluster's nodes share: a sync that
	// asked upstream leaves its databases there, and a scheduled sync
	// within sync_interval of it takes them from there (see Bucket).
	Bucket Bucket
	// Node is who this node is in the bucket, the name its leases are
	// held by: the manifests its syncs write name it, so that it does not
	// follow its own. Required with Bucket.
	Node string
}

// Scheduler runs the syncs of every mirror-mode repo: periodically from
// Run, on demand from Trigger, or at once from Sync. At most one sync of a
// repo runs at a time.
type Scheduler struct {
	cfg     *config.Config
	catalog *catalog.Catalog
	store   *store.Store
	fetcher *fetch.Fetcher
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	limit   *rate.Limiter // sync.max_bandwidth, shared by every sync; nil: no cap
	// exclusiveRun is Options.Exclusive.
	exclusiveRun func(ctx context.Context, name string, fn func(context.Context) error) error
	bucket       Bucket           // Options.Bucket
	self         string           // Options.Node
	repos        map[string]*repo // "distro/repo" -> repo; fixed after New
	order        []string         // keys of repos, sorted

	// afterSync, if set (tests only), runs after every scheduled sync.
	afterSync func(key string, err error)
	// joined, if set (tests only), runs when a sync started or joined
	// the flight of a file.
	joined func(rel string)
}

// repo is one mirror repo and its runtime state.
type repo struct {
	*catalog.Repo
	interval time.Duration

	sem     chan struct{} // holds one token while a sync runs
	trigger chan struct{} // cap 1: a pending on-demand sync, which asks upstream
	follow  chan struct{} // cap 1: a pending sync to the bucket's manifest (watch)

	mu    stdsync.Mutex // guards state; never held across I/O
	state State

	// progress of the running sync, read by States; reset at each start.
	filesDone, filesTotal, bytesDone, bytesTotal atomic.Int64
}

// State is what the scheduler knows of one repo: persisted in the store's
// KV (without Running and Progress) and shown by Status.
type State struct {
	Repo            string    `json:"repo"` // distro/repo
	Running         bool      `json:"running"`
	LastAttempt     time.Time `json:"last_attempt,omitzero"`
	LastSuccess     time.Time `json:"last_success,omitzero"`
	DurationSeconds float64   `json:"duration_seconds"` // of the last attempt
	Files           int64     `json:"files"`            // fetched by the last attempt
	Bytes           int64     `json:"bytes"`            // fetched by the last attempt
	Failures        int64     `json:"failures"`         // consecutive failed attempts
	LastError       string    `json:"last_error,omitempty"`
	LastUpdate      string    `json:"lastupdate,omitempty"` // upstream's lastupdate at the last success
	Progress        *Progress `json:"progress,omitempty"`
}

// Progress is the state of a running sync.
type Progress struct {
	FilesDone  int64 `json:"files_done"`
	FilesTotal int64 `json:"files_total"`
	BytesDone  int64 `json:"bytes_done"` // including partial downloads
	BytesTotal int64 `json:"bytes_total"`
	// RateBytesPerSecond is BytesDone over the time since the sync began
	// (under sync.max_bandwidth when it is set).
	RateBytesPerSecond int64 `json:"rate_bytes_per_second"`
}

// New prepares the syncs of the catalog's mirror repos and loads their
// state.
func New(cat *catalog.Catalog, st *store.Store, opts Options) (*Scheduler, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Fetcher == nil {
		opts.Fetcher = fetch.New(st, fetch.Options{Catalog: cat, Logger: opts.Logger, Registerer: opts.Registerer})
	}
	cfg := cat.Config()
	s := &Scheduler{cfg: cfg, catalog: cat, store: st, fetcher: opts.Fetcher,
		log: opts.Logger, now: opts.Now, exclusiveRun: opts.Exclusive, bucket: opts.Bucket, repos: map[string]*repo{},
		self: opts.Node}
	if s.bucket != nil && s.self == "" {
		return nil, errors.New("sync: a bucket needs the node's name (Options.Node)")
	}
	if bw := int64(cfg.Sync.MaxBandwidth); bw > 0 {
		// A burst of a tenth of a second, at least one read buffer.
		s.limit = rate.NewLimiter(rate.Limit(bw), int(max(bw/10, 64<<10)))
	}
	for _, cr := range cat.Repos() {
		if cr.Mode != config.ModeMirror {
			continue
		}
		if cr.Mirrors() == nil {
			return nil, fmt.Errorf("sync: the catalog has no mirrors for %s", cr.Key)
		}
		r := &repo{Repo: cr, interval: cfg.Distros[cr.Distro].Repos[cr.Name].SyncInterval,
			sem: make(chan struct{}, 1), trigger: make(chan struct{}, 1), follow: make(chan struct{}, 1)}
		if r.interval <= 0 {
			r.interval = DefaultInterval
		}
		r.state.Repo = r.Key
		if val, err := st.Get(keyState + r.Key); err == nil {
			if err := json.Unmarshal(val, &r.state); err != nil {
				s.log.Warn("dropping unreadable sync state", "repo", r.Key, "err", err)
			}
			r.state.Repo, r.state.Running, r.state.Progress = r.Key, false, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("load sync state of %s: %w", r.Key, err)
		}
		s.repos[r.Key] = r
		s.order = append(s.order, r.Key)
		opts.Fetcher.Label(r.Key)
	}
	sort.Strings(s.order)
	s.metrics = newMetrics(opts.Registerer, s.order)
	for _, k := range s.order {
		if t := s.repos[k].state.LastSuccess; !t.IsZero() {
			s.metrics.lastSuccess.WithLabelValues(k).Set(float64(t.Unix()))
		}
	}
	return s, nil
}

// Repos returns the mirror repos ("distro/repo") that distro and repo
// name, in order: all of them for distro "", every mirror repo of the
// distro for repo "". It fails with ErrUnknownRepo when none matches.
func (s *Scheduler) Repos(distro, repo string) ([]string, error) {
	var keys []string
	for _, k := range s.order {
		r := s.repos[k]
		if (distro == "" || r.Distro == distro) && (repo == "" || r.Name == repo) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: %w", strings.TrimSuffix(distro+"/"+repo, "/"), ErrUnknownRepo)
	}
	return keys, nil
}

// Trigger asks for a sync of distro/repo (every mirror repo of distro when
// repo is "") as soon as possible and returns at once. A sync already
// pending is not queued twice; one running is followed by another. So the
// only refusal is a name that is no mirror repo, wrapping ErrUnknownRepo.
func (s *Scheduler) Trigger(distro, repo string) error {
	if distro == "" {
		return fmt.Errorf("no distro: %w", ErrUnknownRepo)
	}
	keys, err := s.Repos(distro, repo)
	if err != nil {
		return err
	}
	for _, k := range keys {
		select {
		case s.repos[k].trigger <- struct{}{}:
		default: // one is pending already
		}
	}
	return nil
}

// Run syncs every mirror repo every sync_interval, with jitter, and when
// triggered, until ctx ends. A repo never synced, or overdue, syncs soon
// after start. Run returns once every sync it started has returned.
func (s *Scheduler) Run(ctx context.Context) error {
	var wg stdsync.WaitGroup
	for _, k := range s.order {
		r := s.repos[k]
		wg.Go(func() { s.loop(ctx, r) })
	}
	if s.bucket != nil {
		wg.Go(func() { s.watch(ctx) })
	}
	wg.Wait()
	return nil
}

// loop is the schedule of one repo; it exits when ctx ends.
func (s *Scheduler) loop(ctx context.Context, r *repo) {
	r.mu.Lock()
	last := r.state.LastSuccess
	r.mu.Unlock()
	var first time.Duration
	if !last.IsZero() {
		// Overdue repos of a restarted daemon do not all start at once.
		first = max(0, last.Add(r.interval).Sub(s.now())) + jitter(min(r.interval/10, 30*time.Second))
	}
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		mayFollow := true
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.trigger:
			timer.Stop()
			mayFollow = false
		case <-r.follow:
			timer.Stop()
		}
		err := s.syncRepo(ctx, r, mayFollow)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("sync failed; serving the previous state", "repo", r.Key, "err", err)
		}
		if s.afterSync != nil {
			s.afterSync(r.Key, err)
		}
		// ±10% spreads the repos and the mirrors of many machines over
		// the hour instead of hitting upstream on the same second.
		timer.Reset(r.interval - r.interval/10 + jitter(r.interval/5))
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// Sync syncs distro/repo (every mirror repo of distro when repo is "",
// every mirror repo when both are "") now and waits for it, after any
// sync of the same repo that is running. It returns the errors of the
// repos that failed, joined.
func (s *Scheduler) Sync(ctx context.Context, distro, repo string) error {
	keys, err := s.Repos(distro, repo)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		if err := s.syncRepo(ctx, s.repos[k], false); err != nil {
			errs = append(errs, fmt.Errorf("sync %s: %w", k, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// States returns every mirror repo's State, in repo order, with the
// progress of the running syncs: the "sync" of /api/v1/status and the
// web UI's repo states.
func (s *Scheduler) States() []State {
	out := make([]State, 0, len(s.order))
	for _, k := range s.order {
		r := s.repos[k]
		r.mu.Lock()
		st := r.state
		r.mu.Unlock()
		if st.Running {
			p := &Progress{FilesDone: r.filesDone.Load(), FilesTotal: r.filesTotal.Load(),
				BytesDone: r.bytesDone.Load(), BytesTotal: r.bytesTotal.Load()}
			p.BytesDone += s.partial(r)
			if d := s.now().Sub(st.LastAttempt).Seconds(); d > 0 {
				p.RateBytesPerSecond = int64(float64(p.BytesDone) / d)
			}
			st.Progress = p
		}
		out = append(out, st)
	}
	return out
}

// partial is what the flights under r's folders have written so far: the
// downloads in progress, which BytesDone counts before they end.
func (s *Scheduler) partial(r *repo) int64 {
	var n int64
	s.fetcher.Flights().Range(func(rel string, f *lockfree.Flight) bool {
		for _, a := range r.Arches {
			if dir := r.Dir(a); len(rel) > len(dir) && rel[len(dir)] == '/' && strings.HasPrefix(rel, dir) {
				n += f.Written()
			}
		}
		return true
	})
	return n
}

// syncRepo runs one sync of r, after any running one, and records its
// outcome in the state, the KV and the metrics. With mayFollow (a
// scheduled sync, not one asked for) and a bucket, it takes the
// databases of a sync another node ran less than sync_interval ago from
// the bucket; one that asked upstream leaves its own there.
func (s *Scheduler) syncRepo(ctx context.Context, r *repo, mayFollow bool) error {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.sem }()

	if !mayFollow {
		select {
		case <-r.trigger: // this sync answers a trigger that arrived meanwhile
		default:
		}
	}
	select {
	case <-r.follow: // and so does any sync a manifest's change
	default:
	}
	r.filesDone.Store(0)
	r.filesTotal.Store(0)
	r.bytesDone.Store(0)
	r.bytesTotal.Store(0)
	start := time.Now()
	r.mu.Lock()
	r.state.Running = true
	r.state.LastAttempt = s.now()
	prev := r.state
	r.mu.Unlock()
	s.saveState(r)
	s.log.Info("sync started", "repo", r.Key)

	rn := &run{s: s, r: r, prev: prev, ms: r.Mirrors()}
	var lastupdate string
	err := s.exclusive(ctx, "sync/"+r.Key, func(ctx context.Context) error {
		if mayFollow {
			rn.follow = s.followable(ctx, r)
		}
		var err error
		lastupdate, err = rn.do(ctx)
		if err != nil && rn.follow != nil && ctx.Err() == nil {
			s.log.Warn("sync from the bucket failed; asking upstream", "repo", r.Key, "err", err)
			rn = &run{s: s, r: r, prev: prev, ms: r.Mirrors()}
			lastupdate, err = rn.do(ctx)
		}
		if err == nil && rn.follow == nil && s.bucket != nil {
			if err := s.share(ctx, r, lastupdate); err != nil {
				// The nodes after this one ask upstream themselves.
				s.log.Warn("share the synced databases", "repo", r.Key, "err", err)
			}
		}
		return err
	})
	took := time.Since(start)

	r.mu.Lock()
	st := &r.state
	st.Running = false
	st.DurationSeconds = took.Seconds()
	st.Files, st.Bytes = rn.files.Load(), rn.bytes.Load()
	if err == nil {
		st.LastSuccess, st.LastError, st.Failures = s.now(), "", 0
		st.LastUpdate = lastupdate
	} else {
		st.LastError = err.Error()
		st.Failures++
	}
	success := st.LastSuccess
	r.mu.Unlock()
	s.saveState(r)

	m := s.metrics
	m.duration.WithLabelValues(r.Key).Set(took.Seconds())
	m.files.WithLabelValues(r.Key).Add(float64(rn.files.Load()))
	m.bytes.WithLabelValues(r.Key).Add(float64(rn.bytes.Load()))
	if err != nil {
		m.failures.WithLabelValues(r.Key).Inc()
		return err
	}
	m.lastSuccess.WithLabelValues(r.Key).Set(float64(success.Unix()))
	if err := s.writeStamps(r.Distro); err != nil {
		return err
	}
	s.log.Info("sync done", "repo", r.Key, "files", rn.files.Load(), "bytes", rn.bytes.Load(),
		"duration_seconds", took.Seconds(), "unchanged", rn.unchanged, "from", rn.from())
	return nil
}

// exclusive runs fn under Options.Exclusive, or at once without one.
func (s *Scheduler) exclusive(ctx context.Context, name string, fn func(context.Context) error) error {
	if s.exclusiveRun == nil {
		return fn(ctx)
	}
	return s.exclusiveRun(ctx, name, fn)
}

func (s *Scheduler) saveState(r *repo) {
	r.mu.Lock()
	st := r.state
	r.mu.Unlock()
	st.Running, st.Progress = false, nil
	val, _ := json.Marshal(st)
	if err := s.store.Put(keyState+r.Key, val); err != nil {
		// The state is a record, not a requirement: the tree stays right.
		s.log.Warn("save sync state", "repo", r.Key, "err", err)
	}
}

// writeStamps writes the distro's lastsync (now) and lastupdate at its
// base, as Arch mirrors do. lastupdate is the oldest of the upstream
// values its mirror repos last synced to, and is written only when every
// one of them has synced: a downstream mirror that polls it must never be
// told "up to date" while one of our repos lags behind.
func (s *Scheduler) writeStamps(distro string) error {
	now := s.now()
	stamp := store.Meta{LastModified: now, FetchedAt: now}
	if err := s.store.WriteFile(distro+"/lastsync", fmt.Appendf(nil, "%d\n", now.Unix()), stamp); err != nil {
		return err
	}
	oldest := int64(-1)
	for _, k := range s.order {
		r := s.repos[k]
		if r.Distro != distro {
			continue
		}
		r.mu.Lock()
		lu := r.state.LastUpdate
		r.mu.Unlock()
		v, err := strconv.ParseInt(lu, 10, 64)
		if err != nil {
			return nil // a repo without a known lastupdate: write none
		}
		if oldest < 0 || v < oldest {
			oldest = v
		}
	}
	if oldest < 0 {
		return nil
	}
	if cur, err := s.readTree(distro + "/lastupdate"); err == nil && strings.TrimSpace(string(cur)) == strconv.FormatInt(oldest, 10) {
		return nil // unchanged: keep its mtime for If-Modified-Since
	}
	return s.store.WriteFile(distro+"/lastupdate", fmt.Appendf(nil, "%d\n", oldest), stamp)
}

func (s *Scheduler) readTree(rel string) ([]byte, error) {
	f, err := s.store.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 64)
	n, err := f.Read(buf)
	if n > 0 {
		return buf[:n], nil
	}
	return nil, err
}
