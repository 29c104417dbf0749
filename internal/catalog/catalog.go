package catalog

import (
	"log/slog"
	"slices"
	"strings"
	stdsync "sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

// Catalog is the configured repos and their current state. It is safe
// for concurrent use; build it once with New.
type Catalog struct {
	cfg    *config.Config
	router *Router
	store  *store.Store
	log    *slog.Logger
	repos  map[repoName]*Repo     // by distro and name: a lookup per request, no key to build
	sorted []*Repo                // the repos, by Key
	bases  map[string]*mirrorList // distro -> the mirrors of its base files (lastupdate, lastsync)
	lists  []*mirrorList          // every mirror list, the repos' and the bases'

	parse  singleflight.Group // one parse of a database version at a time
	dbs    stdsync.Map        // tree path of a {repo}.db -> *DB (the last parse)
	staged stdsync.Map        // repo folder -> map[string]Expect (see Expecting)
	// changed is closed and replaced by Committed when a {repo}.db is
	// committed (DBChanged); never nil after New.
	changed atomic.Pointer[chan struct{}]
}

// repoName is a repo's distro and name, a key of Catalog.repos.
type repoName struct{ distro, repo string }

// Repo is one configured repo.
type Repo struct {
	Distro, Name string
	Key          string // "distro/repo", the metrics label
	Mode         string // config.ModeMirror, ModeProxy or ModeHosted
	Arches       []string

	mirrors *mirrorList // nil for hosted repos and when the catalog has no upstream client
	cfg     *config.Config
}

// Mirrors is the repo's current mirror set (config.UpstreamsOf: its
// upstreams, then its upstreams_file's); nil for hosted repos and when
// the catalog has no upstream client. An upstreams_file that changes
// replaces the set (Watcher), so take it once per fetch.
func (r *Repo) Mirrors() *upstream.MirrorSet {
	if r.mirrors == nil {
		return nil
	}
	return r.mirrors.set.Load()
}

// Dir is the repo's folder for arch in the tree, e.g.
// "archlinux/core/os/x86_64" (config.RepoDir).
func (r *Repo) Dir(arch string) string { return r.cfg.RepoDir(r.Distro, r.Name, arch) }

// DBPath is the tree path of the repo's {repo}.db for arch.
func (r *Repo) DBPath(arch string) string { return r.Dir(arch) + "/" + r.Name + ".db" }

// Options configures New.
type Options struct {
	// Upstream builds the mirror sets; nil leaves every Repo.Mirrors nil
	// (a tree served as it is).
	Upstream *upstream.Client
	Logger   *slog.Logger
}

// New builds the catalog of cfg over the tree st.
func New(cfg *config.Config, st *store.Store, opts Options) (*Catalog, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{cfg: cfg, router: newRouter(cfg), store: st, log: opts.Logger,
		repos: map[repoName]*Repo{}, bases: map[string]*mirrorList{}}
	first := make(chan struct{})
	c.changed.Store(&first)
	for dn, d := range cfg.Distros {
		for rn, rc := range d.Repos {
			r := &Repo{Distro: dn, Name: rn, Key: dn + "/" + rn, Mode: rc.Mode, Arches: d.Arch, cfg: cfg}
			if opts.Upstream != nil && rc.Mode != config.ModeHosted {
				list, file := cfg.UpstreamsOf(dn, rn)
				ml, err := c.newMirrorList(opts.Upstream, r.Key, list, file, cfg.ProxyFor(dn), true)
				if err != nil {
					return nil, err
				}
				r.mirrors = ml
			}
			c.repos[repoName{dn, rn}] = r
			c.sorted = append(c.sorted, r)
		}
		if opts.Upstream != nil && (len(d.Upstreams) > 0 || d.UpstreamsFile != "") {
			ml, err := c.newMirrorList(opts.Upstream, dn, d.Upstreams, d.UpstreamsFile, cfg.ProxyFor(dn), false)
			if err != nil {
				return nil, err
			}
			c.bases[dn] = ml
		}
	}
	slices.SortFunc(c.sorted, func(a, b *Repo) int { return strings.Compare(a.Key, b.Key) })
	return c, nil
}

// Config is the configuration the catalog was built from.
func (c *Catalog) Config() *config.Config { return c.cfg }

// Resolve maps a URL path to a Target (see Router.Resolve).
func (c *Catalog) Resolve(path string) (Target, error) { return c.router.Resolve(path) }

// Folder maps a URL path to a folder the layout defines (see
// Router.Folder).
func (c *Catalog) Folder(path string) (Folder, bool) { return c.router.Folder(path) }

// Repos returns every configured repo, by key.
func (c *Catalog) Repos() []*Repo {
	return slices.Clone(c.sorted)
}

// Mirrors is where t comes from upstream: its repo's mirror set, or for
// a distro's base files (t.Repo "") the distro's own upstreams. Nil when
// there are none.
func (c *Catalog) Mirrors(t Target) *upstream.MirrorSet {
	if t.Repo == "" {
		if b, ok := c.bases[t.Distro]; ok {
			return b.set.Load()
		}
		return nil
	}
	if r, ok := c.repos[repoName{t.Distro, t.Repo}]; ok {
		return r.Mirrors()
	}
	return nil
}
