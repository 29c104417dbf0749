package web

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/api"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

// entry is one line of an index.
type entry struct {
	Name, Href string
	Dir        bool
	Size       int64 // -1: unknown or a folder
	ModTime    time.Time
	Note       string // "not cached": the db names it, the tree lacks it
}

type crumb struct{ Name, Href string }

type indexData struct {
	Path     string
	Crumbs   []crumb
	Parent   string
	Entries  []entry
	Sort     string // name, size, date
	Desc     bool
	Heads    map[string]string // column -> link that sorts by it
	Mode     string
	RepoHref string // the repo's UI page
	Cached   int    // files in the tree
	Named    int    // files the db names that the tree lacks
}

// index serves a folder of the tree, redirects a folder named without
// its '/', and answers the tree's 404 for everything else.
func (u *UI) index(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		plainError(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f, ok := u.catalog.Folder(r.URL.Path)
	if !ok {
		plainError(w, "not found", http.StatusNotFound)
		return
	}
	if !strings.HasSuffix(r.URL.Path, "/") {
		target := escapePath(r.URL.Path) + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
		return
	}
	by, desc := sortParams(r.URL.Query().Get("sort"), r.URL.Query().Get("order"))
	if !f.RepoDir() {
		// A handful of entries, from the config: rendered each time.
		d, err := u.indexData(f, by, desc)
		if err != nil {
			u.log.Error("list folder", "path", "/"+f.Rel()+"/", "err", err)
			plainError(w, "internal error listing the folder", http.StatusInternalServerError)
			return
		}
		u.render(w, r, http.StatusOK, "index", page{Title: "Index of " + d.Path, Nav: "repos", Data: d})
		return
	}
	u.repoIndex(w, r, f, by, desc)
}

// repoIndex serves a repo folder's page from u.indexes: rendered once per
// version of the folder and sort order, then written from memory.
func (u *UI) repoIndex(w http.ResponseWriter, r *http.Request, f catalog.Folder, by string, desc bool) {
	arrived := u.indexes.now()
	render := func() ([]byte, error) {
		d, err := u.indexData(f, by, desc)
		if err != nil {
			return nil, err
		}
		return u.renderBytes("index", page{Title: "Index of " + d.Path, Nav: "repos", Data: d})
	}
	var body []byte
	var etag string
	info, err := u.tree.Lstat(f.Rel())
	switch {
	case err == nil:
		body, etag, err = u.indexes.get(pageKey{rel: f.Rel(), sort: by, desc: desc}, versionOf(info), arrived, render)
	case isNotFound(err):
		body, err = render() // no folder yet: nothing in it, nothing to key on
	}
	if err != nil {
		u.log.Error("list folder", "path", "/"+f.Rel()+"/", "err", err)
		plainError(w, "internal error listing the folder", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	pageHeaders(h)
	if etag != "" {
		h.Set("ETag", etag)
	}
	// Content-Length, HEAD, If-None-Match and Range from the bytes kept.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// indexData lists folder f sorted by the column by.
func (u *UI) indexData(f catalog.Folder, by string, desc bool) (indexData, error) {
	d := indexData{Path: "/" + f.Rel() + "/"}
	d.Crumbs = append(d.Crumbs, crumb{Name: f.Distro, Href: "/" + url.PathEscape(f.Distro) + "/"})
	href := d.Crumbs[0].Href
	for _, s := range f.Segs {
		href += url.PathEscape(s) + "/"
		d.Crumbs = append(d.Crumbs, crumb{Name: s, Href: href})
	}
	d.Parent = "../"
	if len(f.Segs) == 0 {
		d.Parent = "/"
	}
	var err error
	if f.RepoDir() {
		d.Mode = u.cfg.Distros[f.Distro].Repos[f.Repo].Mode
		d.RepoHref = repoURL(f.Distro, f.Repo)
		d.Entries, err = u.repoEntries(f, &d)
	} else {
		d.Entries, err = u.folderEntries(f)
	}
	if err != nil {
		return indexData{}, err
	}
	d.Sort, d.Desc = by, desc
	sortEntries(d.Entries, by, desc)
	d.Heads = map[string]string{}
	for _, col := range []string{"name", "size", "date"} {
		order := "asc"
		if col == d.Sort && !d.Desc {
			order = "desc"
		}
		d.Heads[col] = "?sort=" + col + "&order=" + order
	}
	return d, nil
}

// folderEntries lists the folders the layout allows below f (and, at a
// distro's base, its sync stamps), dated by the tree when it has them.
func (u *UI) folderEntries(f catalog.Folder) ([]entry, error) {
	d := u.cfg.Distros[f.Distro]
	var names []string
	switch next := f.Layout[len(f.Segs)]; next {
	case "$repo":
		names = sortedKeys(d.Repos)
	case "$arch":
		names = slices.Clone(d.Arch)
	default:
		names = []string{next}
	}
	present := map[string]fs.DirEntry{}
	list, err := u.tree.ReadDir(f.Rel())
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	for _, e := range list {
		present[e.Name()] = e
	}
	out := make([]entry, 0, len(names)+2)
	for _, n := range names {
		e := entry{Name: n + "/", Href: url.PathEscape(n) + "/", Dir: true, Size: -1}
		if de, ok := present[n]; ok && de.IsDir() {
			if info, err := de.Info(); err == nil {
				e.ModTime = info.ModTime()
			}
		}
		out = append(out, e)
	}
	if len(f.Segs) == 0 {
		for _, stamp := range []string{"lastsync", "lastupdate"} {
			if m, err := u.tree.Stat(f.Distro + "/" + stamp); err == nil {
				out = append(out, entry{Name: stamp, Href: stamp, Size: m.Size, ModTime: m.LastModified})
			}
		}
	}
	return out, nil
}

// repoEntries lists a repo folder: the files of the tree that the tree
// handler serves there, and, outside hosted repos, the packages the db
// names that are not cached yet (a GET fetches them).
func (u *UI) repoEntries(f catalog.Folder, d *indexData) ([]entry, error) {
	list, err := u.tree.ReadDir(f.Rel())
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	have := map[string]bool{}
	var out []entry
	for _, de := range list {
		name := de.Name()
		if de.IsDir() {
			continue
		}
		if _, err := u.catalog.Resolve("/" + f.Rel() + "/" + name); err != nil {
			continue // not servable: temp or stray files
		}
		e := entry{Name: name, Href: "./" + url.PathEscape(name), Size: -1}
		if de.Type()&fs.ModeSymlink != 0 {
			// A hosted repo's {repo}.db: described by its target.
			m, err := u.tree.Stat(f.Rel() + "/" + name)
			if err != nil {
				continue // dangling
			}
			e.Size, e.ModTime = m.Size, m.LastModified
		} else if info, err := de.Info(); err == nil {
			e.Size, e.ModTime = info.Size(), info.ModTime()
		} else {
			continue // removed meanwhile
		}
		have[name] = true
		out = append(out, e)
	}
	d.Cached = len(out)
	if d.Mode == config.ModeHosted {
		return out, nil
	}
	if d.Mode == config.ModeProxy {
		for _, db := range []string{f.Repo + ".db", f.Repo + ".files"} {
			if !have[db] {
				out = append(out, entry{Name: db, Href: "./" + url.PathEscape(db), Size: -1, Note: "not cached"})
				d.Named++
			}
		}
	}
	page, err := u.api.Packages(f.Distro, f.Repo, f.Arch, "", 1, 1<<30)
	if err != nil {
		if api.HTTPStatus(err) == http.StatusNotFound {
			return out, nil // no db yet: only what is cached
		}
		return nil, err
	}
	for _, p := range page.Packages {
		if p.Filename == "" || have[p.Filename] {
			continue
		}
		out = append(out, entry{Name: p.Filename, Href: "./" + url.PathEscape(p.Filename), Size: p.CSize, ModTime: time.Unix(p.BuildDate, 0), Note: "not cached"})
		d.Named++
	}
	return out, nil
}

// sortParams are the column and order of the query's sort and order
// parameters: name, size or date (else name), descending or not.
func sortParams(by, order string) (string, bool) {
	if by != "size" && by != "date" {
		by = "name"
	}
	return by, order == "desc"
}

// sortEntries sorts folders first, then by the column.
func sortEntries(es []entry, by string, desc bool) {
	slices.SortStableFunc(es, func(a, b entry) int {
		if a.Dir != b.Dir {
			if a.Dir {
				return -1
			}
			return 1
		}
		var c int
		switch by {
		case "size":
			c = cmp.Compare(a.Size, b.Size)
		case "date":
			c = a.ModTime.Compare(b.ModTime)
		}
		if c == 0 {
			c = strings.Compare(a.Name, b.Name)
		}
		if desc {
			c = -c
		}
		return c
	})
}

// plainError answers like the tree handler does, so that the index does
// not change what a client sees for a file that is not there.
func plainError(w http.ResponseWriter, msg string, code int) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

func isNotFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, store.ErrNotFound)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
