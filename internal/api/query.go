package api

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/hosted"
	"github.com/mirrord/mirrord/internal/pgp"
	"github.com/mirrord/mirrord/internal/prefetch"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/sync"
)

// The read API as Go functions. The JSON handlers and the web UI
// (internal/web) both call these, so that a page and a script reading the
// same repo never disagree.

// Summary is a package in a listing.
type Summary struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Desc      string `json:"desc,omitempty"`
	Arch      string `json:"arch"`
	Filename  string `json:"filename"`
	CSize     int64  `json:"csize"`
	ISize     int64  `json:"isize"`
	BuildDate int64  `json:"builddate"`
}

// Details is one package with every field of its db entry.
type Details struct {
	Summary
	Base      string   `json:"base,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	MD5Sum    string   `json:"md5sum,omitempty"`
	SHA256Sum string   `json:"sha256sum,omitempty"`
	PGPSig    string   `json:"pgpsig,omitempty"`
	// SignedBy is the fingerprint of the key whose signature of this
	// file mirrord verified or made (hosted repos only); a %PGPSIG% alone
	// proves nothing.
	SignedBy     string   `json:"signed_by,omitempty"`
	URL          string   `json:"url,omitempty"`
	Licenses     []string `json:"licenses,omitempty"`
	Packager     string   `json:"packager,omitempty"`
	Replaces     []string `json:"replaces,omitempty"`
	Conflicts    []string `json:"conflicts,omitempty"`
	Provides     []string `json:"provides,omitempty"`
	Depends      []string `json:"depends,omitempty"`
	OptDepends   []string `json:"optdepends,omitempty"`
	MakeDepends  []string `json:"makedepends,omitempty"`
	CheckDepends []string `json:"checkdepends,omitempty"`
	XData        []string `json:"xdata,omitempty"`
}

func summarize(p *alpm.Package) Summary {
	return Summary{Name: p.Name, Version: p.Version, Desc: p.Desc, Arch: p.Arch, Filename: p.Filename, CSize: p.CSize, ISize: p.ISize, BuildDate: p.BuildDate}
}

// Page is one page of a repo's listing: GET .../packages. The fields are
// in the order the JSON always had.
type Page struct {
	Packages []Summary `json:"packages"`
	Page     int       `json:"page"`
	PerPage  int       `json:"per_page"`
	Total    int       `json:"total"`
}

// Packages returns page (from 1) of distro/repo/arch's packages whose name
// or description contains q (any case; "" matches all), sorted by name.
// Errors map to statuses with HTTPStatus (404: no such repo, arch or db).
func (h *Handler) Packages(distro, repo, arch, q string, page, perPage int) (Page, error) {
	page, perPage = max(page, 1), max(perPage, 1)
	db, err := h.db(distro, repo, arch)
	if err != nil {
		return Page{}, err
	}
	match := db.Packages
	if term := strings.ToLower(strings.TrimSpace(q)); term != "" {
		match = nil
		for _, p := range db.Packages {
			if strings.Contains(strings.ToLower(p.Name), term) || strings.Contains(strings.ToLower(p.Desc), term) {
				match = append(match, p)
			}
		}
	}
	total := len(match)
	lo := min((page-1)*perPage, total)
	hi := min(lo+perPage, total)
	out := make([]Summary, 0, hi-lo)
	for _, p := range match[lo:hi] {
		out = append(out, summarize(p))
	}
	return Page{Packages: out, Page: page, PerPage: perPage, Total: total}, nil
}

// Package returns one package of distro/repo/arch's db by name.
func (h *Handler) Package(distro, repo, arch, name string) (Details, error) {
	db, err := h.db(distro, repo, arch)
	if err != nil {
		return Details{}, err
	}
	p := db.Package(name)
	if p == nil {
		return Details{}, errorf(http.StatusNotFound, "no package "+strconv.Quote(name)+" in "+distro+"/"+repo+"/"+arch)
	}
	d := Details{
		Summary: summarize(p), Base: p.Base, Groups: p.Groups, MD5Sum: p.MD5Sum, SHA256Sum: p.SHA256Sum, PGPSig: p.PGPSig,
		URL: p.URL, Licenses: p.Licenses, Packager: p.Packager, Replaces: p.Replaces, Conflicts: p.Conflicts,
		Provides: p.Provides, Depends: p.Depends, OptDepends: p.OptDepends, MakeDepends: p.MakeDepends,
		CheckDepends: p.CheckDepends, XData: p.XData,
	}
	if h.pub != nil && h.cfg.Distros[distro].Repos[repo].Mode == config.ModeHosted {
		d.SignedBy = h.pub.SignedBy(distro, repo, arch, p.Filename)
	}
	return d, nil
}

// Key is the public signing key of a hosted repo, false if it has none.
func (h *Handler) Key(distro, repo string) (pgp.Key, bool) {
	if h.pub == nil || h.cfg.Distros[distro].Repos[repo].Mode != config.ModeHosted {
		return pgp.Key{}, false
	}
	return h.pub.Key(distro, repo)
}

// Distro is one configured distro as GET /api/v1/repos shows it.
type Distro struct {
	Name   string   `json:"name"`
	Layout string   `json:"layout"`
	Arches []string `json:"arches"`
	Repos  []Repo   `json:"repos"`
}

// Repo is one repo of a Distro.
type Repo struct {
	Name   string     `json:"name"`
	Mode   string     `json:"mode"`
	Arches []RepoArch `json:"arches"`
	// SigningKey is the fingerprint of the key that signs a hosted
	// repo's databases; its public key is at KeyURL.
	SigningKey string `json:"signing_key,omitempty"`
	KeyURL     string `json:"key_url,omitempty"`
}

// RepoArch is one arch folder of a Repo.
type RepoArch struct {
	Arch     string `json:"arch"`
	DB       bool   `json:"db"`              // a {repo}.db is in the tree
	Packages int    `json:"packages"`        // entries in it
	Error    string `json:"error,omitempty"` // it could not be read
}

// Repos lists every distro, repo and arch, sorted by name, with the
// package count of each db in the tree.
func (h *Handler) Repos() []Distro {
	out := []Distro{}
	for _, dn := range sortedKeys(h.cfg.Distros) {
		d := h.cfg.Distros[dn]
		dv := Distro{Name: dn, Layout: d.Layout, Arches: d.Arch, Repos: []Repo{}}
		for _, rn := range sortedKeys(d.Repos) {
			rv := Repo{Name: rn, Mode: d.Repos[rn].Mode, Arches: []RepoArch{}}
			if k, ok := h.Key(dn, rn); ok {
				rv.SigningKey, rv.KeyURL = k.Fingerprint, "/api/v1/repos/"+dn+"/"+rn+"/key"
			}
			for _, a := range d.Arch {
				av := RepoArch{Arch: a}
				p, err := h.catalog.DB(h.cfg.RepoDir(dn, rn, a) + "/" + rn + ".db")
				switch {
				case err == nil:
					av.DB, av.Packages = true, len(p.Packages)
				case !errors.Is(err, store.ErrNotFound):
					av.DB, av.Error = true, err.Error()
				}
				rv.Arches = append(rv.Arches, av)
			}
			dv.Repos = append(dv.Repos, rv)
		}
		out = append(out, dv)
	}
	return out
}

// Status is GET /api/v1/status. The fields are in the order the JSON
// always had.
type Status struct {
	Cache    CacheStatus    `json:"cache"`
	InFlight int            `json:"in_flight"`         // fetches from upstream in progress
	Publish  *PublishStatus `json:"publish,omitempty"` // nil without a Publisher
	Sync     []sync.State   `json:"sync,omitzero"`     // nil without a Syncer; [] with one and no mirror repo
	// Prefetch is the last prefetch run of each proxy repo's arch that
	// has had one; nil without a Prefetcher.
	Prefetch []prefetch.Run `json:"prefetch,omitzero"`
}

// CacheStatus is what the tree holds.
type CacheStatus struct {
	Files     int64 `json:"files"`
	SizeBytes int64 `json:"size_bytes"`
}

// PublishStatus is the publish queue.
type PublishStatus struct {
	Pending int `json:"pending"` // jobs queued or running
}

// Status reports the cache, the fetches in flight, the publish queue,
// the mirror syncs and the prefetch runs.
func (h *Handler) Status() Status {
	s := Status{Cache: CacheStatus{Files: h.tree.Files(), SizeBytes: h.tree.Size()}, InFlight: h.inFlight()}
	if h.pub != nil {
		s.Publish = &PublishStatus{Pending: h.pub.Pending()}
	}
	if h.syncer != nil {
		s.Sync = h.syncer.States()
	}
	if h.prefetch != nil {
		s.Prefetch = h.prefetch.Runs()
	}
	return s
}

// HTTPStatus is the status the API answers for an error of its functions.
func HTTPStatus(err error) int { return status(err) }

// Ref is a package where a db lists it: Arch is the repo's arch folder,
// which differs from Package.Arch for an "any" package.
type Ref struct {
	Distro  string  `json:"distro"`
	Repo    string  `json:"repo"`
	Arch    string  `json:"arch"`
	Package Summary `json:"package"`
}

// Results is one page of a Search.
type Results struct {
	Results []Ref `json:"results"`
	Page    int   `json:"page"`
	PerPage int   `json:"per_page"`
	Total   int   `json:"total"`
}

// Search finds packages in every repo and arch whose name or description
// contains q (any case; "" matches all). Exact names come first, then
// names starting with q, names containing it, and descriptions; each group
// by name, then distro, repo and arch. Dbs missing or unreadable are
// skipped (Repos tells which).
func (h *Handler) Search(q string, page, perPage int) Results {
	page, perPage = max(page, 1), max(perPage, 1)
	term := strings.ToLower(strings.TrimSpace(q))
	type hit struct {
		rank int
		ref  Ref
	}
	var hits []hit
	h.eachDB(func(distro, repo, arch string, db *catalog.DB) {
		for _, p := range db.Packages {
			rank := 0
			if term != "" {
				name := strings.ToLower(p.Name)
				switch {
				case name == term:
					rank = 0
				case strings.HasPrefix(name, term):
					rank = 1
				case strings.Contains(name, term):
					rank = 2
				case strings.Contains(strings.ToLower(p.Desc), term):
					rank = 3
				default:
					continue
				}
			}
			hits = append(hits, hit{rank, Ref{Distro: distro, Repo: repo, Arch: arch, Package: summarize(p)}})
		}
	})
	// eachDB walks in distro, repo, arch order and each db is sorted by
	// name, so a stable sort on (rank, name) keeps that order within.
	sort.SliceStable(hits, func(i, j int) bool {
		if hits[i].rank != hits[j].rank {
			return hits[i].rank < hits[j].rank
		}
		return hits[i].ref.Package.Name < hits[j].ref.Package.Name
	})
	total := len(hits)
	lo := min((page-1)*perPage, total)
	hi := min(lo+perPage, total)
	out := make([]Ref, 0, hi-lo)
	for _, x := range hits[lo:hi] {
		out = append(out, x.ref)
	}
	return Results{Results: out, Page: page, PerPage: perPage, Total: total}
}

// Carriers lists every repo and arch, of any distro, whose db names a
// package called name.
func (h *Handler) Carriers(name string) []Ref {
	var out []Ref
	h.eachDB(func(distro, repo, arch string, db *catalog.DB) {
		if p := db.Package(name); p != nil {
			out = append(out, Ref{Distro: distro, Repo: repo, Arch: arch, Package: summarize(p)})
		}
	})
	return out
}

// Providers lists the packages of distro's arch folder that satisfy the
// dependency dep ("glibc>=2.38", "sh", "libfoo.so=1-64", or an optdepend
// "foo: for bar"): first those named so, then those that provide it, each
// in repo order. Versions are not compared: the page links a dependency
// to what could satisfy it, as pacman -Si shows names.
func (h *Handler) Providers(distro, arch, dep string) []Ref {
	name := alpm.DepName(dep)
	var named, providing []Ref
	h.eachDB(func(dn, repo, a string, db *catalog.DB) {
		if dn != distro || a != arch {
			return
		}
		if p := db.Package(name); p != nil {
			named = append(named, Ref{Distro: dn, Repo: repo, Arch: a, Package: summarize(p)})
		}
		for _, p := range db.Provides()[name] {
			if p.Name != name {
				providing = append(providing, Ref{Distro: dn, Repo: repo, Arch: a, Package: summarize(p)})
			}
		}
	})
	return append(named, providing...)
}

// eachDB calls fn for every db in the tree, in distro, repo, arch order.
func (h *Handler) eachDB(fn func(distro, repo, arch string, db *catalog.DB)) {
	for _, dn := range sortedKeys(h.cfg.Distros) {
		d := h.cfg.Distros[dn]
		for _, rn := range sortedKeys(d.Repos) {
			for _, a := range d.Arch {
				if db, err := h.catalog.DB(h.cfg.RepoDir(dn, rn, a) + "/" + rn + ".db"); err == nil {
					fn(dn, rn, a, db)
				}
			}
		}
	}
}

// Jobs returns the latest publish jobs of distro/repo, newest first, at
// most limit; distro and repo "" match every one. Without a Publisher
// there are none.
func (h *Handler) Jobs(distro, repo string, limit int) ([]hosted.Job, error) {
	if h.pub == nil || limit <= 0 {
		return nil, nil
	}
	return h.pub.Jobs(distro, repo, limit)
}
