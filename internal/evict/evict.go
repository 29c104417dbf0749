package evict

import (
	"context"
	"log/slog"
	"path"
	"sort"
	"strings"
	stdsync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

// Options configures New.
type Options struct {
	// MaxSize bounds the bytes of evictable files; 0 means no bound.
	MaxSize int64
	// KeepVersions keeps at most this many versions per package name and
	// folder among the evictable files; 0 keeps all.
	KeepVersions int
	// Interval is how often Run evicts; default 30s.
	Interval   time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Evictor trims the tree's evictable files.
type Evictor struct {
	store     *store.Store
	catalog   *catalog.Catalog
	opts      Options
	mu        stdsync.Mutex // one pass at a time; held across removals, never on the request path
	evictions prometheus.Counter
}

// New returns the evictor of cat's repos over st.
func New(st *store.Store, cat *catalog.Catalog, opts Options) *Evictor {
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Evictor{store: st, catalog: cat, opts: opts, evictions: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mirrord_cache_evictions_total",
		Help: "Files removed from the tree by cache eviction.",
	})}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(e.evictions)
	}
	return e
}

// Run evicts every Interval until ctx ends.
func (e *Evictor) Run(ctx context.Context) error {
	t := time.NewTicker(e.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := e.Evict(); err != nil {
				e.opts.Logger.Error("evict", "err", err)
			}
		}
	}
}

// evictable reports whether rel may be evicted: a package file or its
// signature in a proxy repo.
func (e *Evictor) evictable(rel string) bool {
	t, err := e.catalog.Resolve("/" + rel)
	return err == nil && t.Mode == config.ModeProxy && !t.Mutable()
}

// Evict trims the evictable files: first to KeepVersions versions per
// package name and folder (like paccache -rk), then, least recently used
// first, until their bytes fit in MaxSize. Files that the current
// database names (catalog.Pinned) are kept by the first rule but not by
// the second: the size bound wins, and a pinned file is fetched again
// when asked for. A package's .sig goes with it. It returns how many
// files it removed.
func (e *Evictor) Evict() (int, error) {
	if e.opts.MaxSize <= 0 && e.opts.KeepVersions <= 0 {
		return 0, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	type candidate struct {
		rel  string
		size int64 // with its .sig
		at   time.Time
	}
	files := map[string]store.Meta{} // evictable file -> its record
	e.store.Each(func(rel string, m store.Meta) bool {
		if e.evictable(rel) {
			files[rel] = m
		}
		return true
	})
	n := 0
	remove := func(rel string) error {
		for _, r := range []string{rel, rel + ".sig"} {
			if _, ok := files[r]; !ok {
				continue
			}
			if err := e.store.Remove(r); err != nil {
				return err
			}
			delete(files, r)
			n++
			e.evictions.Inc()
			e.opts.Logger.Debug("evicted", "file", r)
		}
		return nil
	}
	for _, rel := range e.oldVersions(files) {
		if err := remove(rel); err != nil {
			return n, err
		}
	}
	if e.opts.MaxSize <= 0 {
		return n, nil
	}
	var total int64
	var cands []candidate
	for rel, m := range files {
		total += m.Size
		if strings.HasSuffix(rel, ".sig") {
			if _, ok := files[strings.TrimSuffix(rel, ".sig")]; ok {
				continue // counted with its package
			}
		}
		cands = append(cands, candidate{rel: rel, size: m.Size + files[rel+".sig"].Size, at: m.LastAccess})
	}
	if total <= e.opts.MaxSize {
		return n, nil
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].at.Before(cands[j].at) })
	for _, c := range cands {
		if total <= e.opts.MaxSize {
			break
		}
		if err := remove(c.rel); err != nil {
			return n, err
		}
		total -= c.size
	}
	return n, nil
}

// oldVersions lists the package files beyond the newest KeepVersions of
// each package name in each folder, skipping pinned ones.
func (e *Evictor) oldVersions(files map[string]store.Meta) []string {
	if e.opts.KeepVersions <= 0 {
		return nil
	}
	type version struct {
		rel, version string
	}
	groups := map[string][]version{} // folder + name -> versions
	for rel := range files {
		fn, err := alpm.ParseFileName(path.Base(rel))
		if err != nil {
			continue // a .sig, or not a package
		}
		key := path.Dir(rel) + "/" + fn.Name + "/" + fn.Arch
		groups[key] = append(groups[key], version{rel, fn.Version})
	}
	var old []string
	for _, vs := range groups {
		if len(vs) <= e.opts.KeepVersions {
			continue
		}
		sort.Slice(vs, func(i, j int) bool { return alpm.Vercmp(vs[i].version, vs[j].version) > 0 })
		for _, v := range vs[e.opts.KeepVersions:] {
			if !e.catalog.Pinned(v.rel) {
				old = append(old, v.rel)
			}
		}
	}
	sort.Strings(old)
	return old
}
