package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/store"
)

// dbCache keeps each parsed {repo}.db while the file's mtime and size stay
// the same, so a listing of extra (8 MB, 15k packages) parses it once per
// change, not per request. Parses of one db are coalesced.
type dbCache struct {
	tree   Tree
	flight singleflight.Group
	mu     stdsync.Mutex      // guards m only; never held while reading a db
	m      map[string]*parsed // tree path of the db -> its parse
}

type parsed struct {
	mtime  time.Time
	size   int64
	pkgs   []*alpm.Package // sorted by name
	byName map[string]*alpm.Package
}

func newDBCache(t Tree) *dbCache { return &dbCache{tree: t, m: map[string]*parsed{}} }

// get returns the parse of the db at rel, or store.ErrNotFound.
func (c *dbCache) get(rel string) (*parsed, error) {
	v, err, _ := c.flight.Do(rel, func() (any, error) {
		f, err := c.tree.Open(rel)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		p := c.m[rel]
		c.mu.Unlock()
		if p != nil && p.mtime.Equal(info.ModTime()) && p.size == info.Size() {
			return p, nil
		}
		db, err := alpm.ReadDB(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", rel, err)
		}
		p = &parsed{mtime: info.ModTime(), size: info.Size(), pkgs: db.Packages, byName: make(map[string]*alpm.Package, len(db.Packages))}
		sort.Slice(p.pkgs, func(i, j int) bool { return p.pkgs[i].Name < p.pkgs[j].Name })
		for _, pkg := range p.pkgs {
			p.byName[pkg.Name] = pkg
		}
		c.mu.Lock()
		c.m[rel] = p
		c.mu.Unlock()
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*parsed), nil
}

// db resolves distro/repo/arch of a request to its parsed db.
func (h *Handler) db(r *http.Request) (*parsed, error) {
	distro, repo, arch := r.PathValue("distro"), r.PathValue("repo"), r.PathValue("arch")
	d, _, err := h.repoConfig(distro, repo)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(d.Arch, arch) {
		return nil, errorf(http.StatusNotFound, "no arch "+strconv.Quote(arch)+" in "+distro)
	}
	p, err := h.dbs.get(h.cfg.RepoDir(distro, repo, arch) + "/" + repo + ".db")
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "no database of "+distro+"/"+repo+"/"+arch+" in the tree yet")
	}
	return p, err
}

// summary is a package in a listing.
type summary struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Desc      string `json:"desc,omitempty"`
	Arch      string `json:"arch"`
	Filename  string `json:"filename"`
	CSize     int64  `json:"csize"`
	ISize     int64  `json:"isize"`
	BuildDate int64  `json:"builddate"`
}

// details is one package with every field of its db entry.
type details struct {
	summary
	Base         string   `json:"base,omitempty"`
	Groups       []string `json:"groups,omitempty"`
	MD5Sum       string   `json:"md5sum,omitempty"`
	SHA256Sum    string   `json:"sha256sum,omitempty"`
	PGPSig       string   `json:"pgpsig,omitempty"`
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

func summarize(p *alpm.Package) summary {
	return summary{Name: p.Name, Version: p.Version, Desc: p.Desc, Arch: p.Arch, Filename: p.Filename, CSize: p.CSize, ISize: p.ISize, BuildDate: p.BuildDate}
}

const maxPerPage = 500

func (h *Handler) listPackages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, err := intParam(q, "page", 1, 1, 1<<30)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	perPage, err := intParam(q, "per_page", 50, 1, maxPerPage)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	db, err := h.db(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	match := db.pkgs
	if term := strings.ToLower(strings.TrimSpace(q.Get("q"))); term != "" {
		match = nil
		for _, p := range db.pkgs {
			if strings.Contains(strings.ToLower(p.Name), term) || strings.Contains(strings.ToLower(p.Desc), term) {
				match = append(match, p)
			}
		}
	}
	total := len(match)
	lo := min((page-1)*perPage, total)
	hi := min(lo+perPage, total)
	out := make([]summary, 0, hi-lo)
	for _, p := range match[lo:hi] {
		out = append(out, summarize(p))
	}
	last := max(1, (total+perPage-1)/perPage)
	if link := linkHeader(r.URL, page, perPage, last); link != "" {
		w.Header().Set("Link", link)
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	writeJSON(w, http.StatusOK, map[string]any{"total": total, "page": page, "per_page": perPage, "packages": out})
}

// linkHeader gives first, prev, next and last page links (RFC 8288), as
// GitHub's API does, keeping the query's other parameters.
func linkHeader(u *url.URL, page, perPage, last int) string {
	link := func(p int, rel string) string {
		q := u.Query()
		q.Set("page", strconv.Itoa(p))
		q.Set("per_page", strconv.Itoa(perPage))
		return fmt.Sprintf("<%s?%s>; rel=%q", u.Path, q.Encode(), rel)
	}
	links := []string{link(1, "first")}
	if page > 1 {
		links = append(links, link(min(page-1, last), "prev"))
	}
	if page < last {
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(last, "last"))
	return strings.Join(links, ", ")
}

func intParam(q url.Values, key string, def, lo, hi int) (int, error) {
	s := q.Get(key)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errorf(http.StatusBadRequest, fmt.Sprintf("%s must be an integer from %d to %d", key, lo, hi))
	}
	return n, nil
}

func (h *Handler) getPackage(w http.ResponseWriter, r *http.Request) {
	db, err := h.db(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	name := r.PathValue("name")
	p := db.byName[name]
	if p == nil {
		h.fail(w, r, errorf(http.StatusNotFound, "no package "+strconv.Quote(name)+" in "+r.PathValue("distro")+"/"+r.PathValue("repo")+"/"+r.PathValue("arch")))
		return
	}
	writeJSON(w, http.StatusOK, details{
		summary: summarize(p), Base: p.Base, Groups: p.Groups, MD5Sum: p.MD5Sum, SHA256Sum: p.SHA256Sum, PGPSig: p.PGPSig,
		URL: p.URL, Licenses: p.Licenses, Packager: p.Packager, Replaces: p.Replaces, Conflicts: p.Conflicts,
		Provides: p.Provides, Depends: p.Depends, OptDepends: p.OptDepends, MakeDepends: p.MakeDepends,
		CheckDepends: p.CheckDepends, XData: p.XData,
	})
}

type distroView struct {
	Name   string     `json:"name"`
	Layout string     `json:"layout"`
	Arches []string   `json:"arches"`
	Repos  []repoView `json:"repos"`
}

type repoView struct {
	Name   string     `json:"name"`
	Mode   string     `json:"mode"`
	Arches []archView `json:"arches"`
}

type archView struct {
	Arch     string `json:"arch"`
	DB       bool   `json:"db"`              // a {repo}.db is in the tree
	Packages int    `json:"packages"`        // entries in it
	Error    string `json:"error,omitempty"` // it could not be read
}

func (h *Handler) repos(w http.ResponseWriter, r *http.Request) {
	out := []distroView{}
	for _, dn := range sortedKeys(h.cfg.Distros) {
		d := h.cfg.Distros[dn]
		dv := distroView{Name: dn, Layout: d.Layout, Arches: d.Arch, Repos: []repoView{}}
		for _, rn := range sortedKeys(d.Repos) {
			rv := repoView{Name: rn, Mode: d.Repos[rn].Mode, Arches: []archView{}}
			for _, a := range d.Arch {
				av := archView{Arch: a}
				p, err := h.dbs.get(h.cfg.RepoDir(dn, rn, a) + "/" + rn + ".db")
				switch {
				case err == nil:
					av.DB, av.Packages = true, len(p.pkgs)
				case !errors.Is(err, store.ErrNotFound):
					av.DB, av.Error = true, err.Error()
				}
				rv.Arches = append(rv.Arches, av)
			}
			dv.Repos = append(dv.Repos, rv)
		}
		out = append(out, dv)
	}
	writeJSON(w, http.StatusOK, map[string]any{"distros": out})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
