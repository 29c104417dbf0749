package prefetch

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	stdsync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/lockfree"
	"github.com/mirrord/mirrord/internal/store"
)

// Fetcher is what the prefetch needs of internal/fetch.Fetcher: the
// flight for a job, joined or started, so that one download serves the
// prefetch and every client that asks meanwhile.
type Fetcher interface {
	Join(ctx context.Context, job fetch.Job) (*lockfree.Flight, *lockfree.Reader, bool)
}

// Run is one prefetch run of a proxy repo's arch: what /api/v1/status
// shows of the last one.
type Run struct {
	Repo     string    `json:"repo"` // distro/repo
	Arch     string    `json:"arch"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"` // zero while it runs
	Files    int64     `json:"files"`             // packages and signatures fetched
	Bytes    int64     `json:"bytes"`
	// Skipped is the newer packages left to clients: beyond
	// cache.prefetch_max_bytes, or of no known size.
	Skipped  int64 `json:"skipped"`
	Failures int64 `json:"failures"`
}

// Prefetcher records what clients get from proxy repos and, when a proxy
// repo's database changes, fetches the newer versions. Build it with New;
// it is safe for concurrent use.
type Prefetcher struct {
	cfg     config.Cache
	catalog *catalog.Catalog
	store   *store.Store
	fetcher Fetcher
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time // time.Now; tests set their own
	ran     func(Run)        // if set, told of each run as it ends (tests)

	folders []*folder          // every arch of every proxy repo (none when cache.prefetch is off); read-only after New
	byDir   map[string]*folder // folders by tree folder; read-only after New
	// recent maps the tree path of a file recorded in the last
	// recordEvery to the unix second of that record (*atomic.Int64):
	// Requested takes a folder's lock once per file and minute. save
	// drops old stamps.
	recent stdsync.Map
}

// folder is one arch of one proxy repo.
type folder struct {
	repo          *catalog.Repo
	arch, dir, db string // arch; its tree folder; the tree path of its {repo}.db
	key           string // the store key of its records
	// seen is the version of its {repo}.db at New, then at the start of
	// its last run: a run follows each change. Only watch uses it after
	// New.
	seen dbVersion

	mu    stdsync.Mutex
	names map[string]*record // package name -> what clients asked for; under mu
	dirty bool               // names changed since the last save; under mu
	last  Run                // the last run, or the one running; under mu
}

// Options configures New.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// New builds the prefetch of cat's proxy repos, fetching through fetcher
// into st, with the records of earlier runs of mirrord. With
// cache.prefetch off it records nothing and Run does nothing.
func New(cat *catalog.Catalog, st *store.Store, fetcher Fetcher, opts Options) *Prefetcher {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := cat.Config().Cache
	p := &Prefetcher{cfg: cfg, catalog: cat, store: st, fetcher: fetcher, log: opts.Logger, now: time.Now,
		byDir: map[string]*folder{}}
	var repos []string
	for _, r := range cat.Repos() {
		if !cfg.Prefetch || r.Mode != config.ModeProxy || r.Mirrors() == nil {
			continue
		}
		repos = append(repos, r.Key)
		for _, arch := range r.Arches {
			f := &folder{repo: r, arch: arch, dir: r.Dir(arch), db: r.DBPath(arch), key: keyPrefix + r.Dir(arch),
				names: map[string]*record{}}
			p.load(f)
			f.seen = p.version(f)
			p.folders = append(p.folders, f)
			p.byDir[f.dir] = f
		}
	}
	p.metrics = newMetrics(opts.Registerer, repos)
	return p
}

// Runs is the last run of each proxy repo's arch that has had one, in the
// catalog's order: the "prefetch" of /api/v1/status.
func (p *Prefetcher) Runs() []Run {
	out := []Run{}
	for _, f := range p.folders {
		f.mu.Lock()
		if !f.last.Started.IsZero() {
			out = append(out, f.last)
		}
		f.mu.Unlock()
	}
	return out
}

// Run prefetches after each change of a proxy repo's database and saves
// the records every saveEvery, until ctx ends; then it saves them once
// more (before the store closes: main waits for Run) and returns nil. A
// database that changes while a run is busy is looked at once it ends.
func (p *Prefetcher) Run(ctx context.Context) error {
	if len(p.folders) == 0 {
		return nil
	}
	var wg stdsync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(saveEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.save()
			}
		}
	})
	p.watch(ctx)
	wg.Wait()
	p.save()
	return nil
}

// dbVersion tells one version of a {repo}.db in the tree from another.
type dbVersion struct {
	sha256  string
	size    int64
	modTime int64
}

func (p *Prefetcher) version(f *folder) dbVersion {
	m, err := p.store.Stat(f.db)
	if err != nil {
		return dbVersion{}
	}
	return dbVersion{m.SHA256, m.Size, m.LastModified.UnixNano()}
}

// watch runs a prefetch for each folder whose database is not the one it
// had at New or at its last run, each time the catalog says a database
// was committed, until ctx ends.
func (p *Prefetcher) watch(ctx context.Context) {
	for {
		changed := p.catalog.DBChanged() // before looking, so that no change is missed
		for _, f := range p.folders {
			if ctx.Err() != nil {
				return
			}
			if v := p.version(f); v != (dbVersion{}) && v != f.seen {
				f.seen = v
				p.prefetch(ctx, f)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// want is a package file of the new database to prefetch.
type want struct {
	target catalog.Target
	size   int64 // %CSIZE%
	sig    bool  // fetch its .sig too
}

// prefetch is one run over f's current database: every name asked for
// within the horizon whose version there is newer than the newest asked
// for and whose file the tree lacks is fetched, the names asked for last
// first, at most cache.prefetch_concurrency at a time, until the sizes
// the database names reach cache.prefetch_max_bytes; what would go over
// is skipped.
func (p *Prefetcher) prefetch(ctx context.Context, f *folder) {
	start := p.now()
	f.setRun(Run{Repo: f.repo.Key, Arch: f.arch, Started: start})
	p.metrics.runs.WithLabelValues(f.repo.Key).Inc()
	wants, err := p.wanted(f, start)
	if err != nil {
		p.log.Warn("prefetch: cannot read the database", "repo", f.repo.Key, "arch", f.arch, "err", err)
	}
	budget := int64(p.cfg.PrefetchMaxBytes)
	slots := make(chan struct{}, p.cfg.PrefetchConcurrency)
	var wg stdsync.WaitGroup
loop:
	for _, w := range wants {
		if w.size <= 0 || w.size > budget {
			f.update(func(r *Run) { r.Skipped++ })
			p.metrics.skipped.WithLabelValues(f.repo.Key).Inc()
			continue
		}
		budget -= w.size
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-slots }()
			p.get(ctx, f, w)
		})
	}
	wg.Wait()
	var run Run
	f.update(func(r *Run) { r.Finished = p.now(); run = *r })
	level := slog.LevelDebug
	if run.Files+run.Skipped+run.Failures > 0 {
		level = slog.LevelInfo
	}
	if p.ran != nil {
		p.ran(run)
	}
	p.log.Log(ctx, level, "prefetched", "repo", run.Repo, "arch", run.Arch, "files", run.Files, "bytes", run.Bytes,
		"skipped", run.Skipped, "failures", run.Failures, "duration_seconds", run.Finished.Sub(start).Seconds())
}

// wanted lists what a run over f's current database fetches, the names
// asked for last first: newer than what was asked for, and not in the
// tree yet.
func (p *Prefetcher) wanted(f *folder, now time.Time) ([]want, error) {
	db, err := p.catalog.DB(f.db)
	if err != nil {
		return nil, err
	}
	cutoff := now.Add(-p.cfg.PrefetchHorizon)
	type candidate struct {
		pkg *alpm.Package
		r   record
	}
	var cands []candidate
	f.mu.Lock()
	for name, r := range f.names {
		if r.At.Before(cutoff) {
			continue
		}
		if pkg := db.Package(name); pkg != nil && alpm.Vercmp(pkg.Version, r.Version) > 0 {
			cands = append(cands, candidate{pkg, *r})
		}
	}
	f.mu.Unlock()
	slices.SortFunc(cands, func(a, b candidate) int {
		return cmp.Or(b.r.At.Compare(a.r.At), strings.Compare(a.pkg.Name, b.pkg.Name))
	})
	var wants []want
	for _, c := range cands {
		// The file name comes from upstream's database: it must name a
		// package file of this very folder.
		rel := f.dir + "/" + c.pkg.Filename
		t, err := p.catalog.Resolve("/" + rel)
		if err != nil || t.Rel != rel || t.Mode != config.ModeProxy || !alpm.IsPackageFile(t.File) {
			continue
		}
		if _, err := p.store.Stat(rel); err == nil {
			continue // in the tree already: a client was first
		}
		wants = append(wants, want{target: t, size: c.pkg.CSize, sig: c.r.Sig})
	}
	return wants, nil
}

// get fetches w, then its .sig if clients ask for those, and counts them.
func (p *Prefetcher) get(ctx context.Context, f *folder, w want) {
	targets := []catalog.Target{w.target}
	if w.sig {
		sig := w.target
		sig.File += ".sig"
		sig.Rel += ".sig"
		targets = append(targets, sig)
	}
	for _, t := range targets {
		n, ours, err := p.fetch(ctx, t)
		if ctx.Err() != nil {
			return // shutting down: not a failure
		}
		if err != nil {
			f.update(func(r *Run) { r.Failures++ })
			p.metrics.failures.WithLabelValues(f.repo.Key).Inc()
			p.log.Warn("prefetch", "file", t.Rel, "err", err)
			return
		}
		if ours {
			f.update(func(r *Run) { r.Files++; r.Bytes += n })
			p.metrics.files.WithLabelValues(f.repo.Key).Inc()
			p.metrics.bytes.WithLabelValues(f.repo.Key).Add(float64(n))
		}
	}
}

// fetch brings t into the tree through its flight and waits for the end.
// ours is whether this call started the flight and the flight fetched
// the file (rather than finding it in the tree); n is then its size. The
// reader it holds keeps a client that joins and leaves from abandoning
// the flight (cache.fill_on_abort false).
func (p *Prefetcher) fetch(ctx context.Context, t catalog.Target) (n int64, ours bool, err error) {
	fl, rd, leader := p.fetcher.Join(ctx, fetch.JobFor(t, p.catalog.Mirrors(t), p.cfg.DBMaxAge))
	defer rd.Close()
	select {
	case <-fl.Done():
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
	if err := fl.Err(); err != nil {
		return 0, false, err
	}
	if _, began := fl.Meta(); !leader || !began {
		return 0, false, nil
	}
	return fl.Written(), true, nil
}

func (f *folder) setRun(r Run) {
	f.mu.Lock()
	f.last = r
	f.mu.Unlock()
}

func (f *folder) update(fn func(*Run)) {
	f.mu.Lock()
	fn(&f.last)
	f.mu.Unlock()
}
