package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/api"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

//go:embed templates static
var assets embed.FS

// Tree is what the UI reads of the data directory (internal/store): the
// folders for the index, and the metadata of databases for their age.
type Tree interface {
	ReadDir(rel string) ([]fs.DirEntry, error)
	Lstat(rel string) (fs.FileInfo, error) // a folder's version for the index cache
	Stat(rel string) (store.Meta, error)
}

// Options configures New.
type Options struct {
	// Traffic is read for the hit ratio and the bytes served and
	// fetched; nil hides them.
	Traffic TrafficSource
	Logger  *slog.Logger
	// IndexCacheBytes bounds the rendered repo folder pages kept in
	// memory (0: 64 MiB, some twenty pages of a 15,000-package repo).
	IndexCacheBytes int64
}

// UI serves the web UI: / and /ui/... pages and /static/... assets. Index
// serves the tree's folders.
type UI struct {
	cfg     *config.Config
	api     *api.Handler
	tree    Tree
	catalog *catalog.Catalog // routing and the layout's folders
	traffic TrafficSource    // nil hides the traffic figures
	log     *slog.Logger
	pages   map[string]*template.Template
	static  http.Handler
	css     string // URL of the stylesheet, with its hash so browsers may cache it
	mux     *http.ServeMux
	indexes *pageCache // rendered repo folders
}

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"home", "search", "repo", "package", "index", "error"}

// New builds the UI of cat's repos over the read API a (the same one main
// mounts at /api/v1/) and the tree.
func New(cat *catalog.Catalog, a *api.Handler, tree Tree, opts Options) (*UI, error) {
	cfg := cat.Config()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.IndexCacheBytes <= 0 {
		opts.IndexCacheBytes = 64 << 20
	}
	u := &UI{cfg: cfg, api: a, tree: tree, catalog: cat, traffic: opts.Traffic, log: opts.Logger,
		pages: map[string]*template.Template{}, mux: http.NewServeMux(), indexes: newPageCache(opts.IndexCacheBytes)}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		u.pages[name] = t
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	css, err := fs.ReadFile(static, "style.css")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(css)
	u.css = "/static/style.css?v=" + hex.EncodeToString(sum[:6])
	u.static = http.StripPrefix("/static/", http.FileServerFS(static))

	m := u.mux
	m.HandleFunc("GET /{$}", u.home)
	m.HandleFunc("GET /ui/search", u.search)
	m.HandleFunc("GET /ui/repo/{distro}/{repo}", u.repo)
	m.HandleFunc("GET /ui/pkg/{distro}/{repo}/{arch}/{name}", u.pkg)
	m.HandleFunc("GET /static/", u.serveStatic)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			u.fail(w, r, http.StatusMethodNotAllowed, "The UI is read-only: only GET and HEAD are answered.")
			return
		}
		u.fail(w, r, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
	})
	return u, nil
}

// ServeHTTP serves / and everything under /ui/ and /static/.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

// Index returns the handler for folders of the tree (/{distro}/...), for
// proxy.Options.Index: it renders a folder, redirects a folder named
// without its trailing '/', and answers 404 like the tree for the rest.
func (u *UI) Index() http.Handler { return http.HandlerFunc(u.index) }

func (u *UI) serveStatic(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("v") != "" {
		// The URL names the content: it never changes.
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "public, max-age=3600")
	}
	u.static.ServeHTTP(w, r)
}

// page is what every template gets; Data is the page's own.
type page struct {
	Name  string // the template, also the body's class
	Title string
	Nav   string // "repos" or "search": the current section
	Query string // the search box
	CSS   string
	Data  any
}

// render writes a page, buffered so that a template error becomes a
// clean 500 rather than half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	body, err := u.renderBytes(name, p)
	if err != nil {
		u.log.Error("render page", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	pageHeaders(w.Header())
	w.WriteHeader(code)
	w.Write(body)
}

// renderBytes renders a page.
func (u *UI) renderBytes(name string, p page) ([]byte, error) {
	p.CSS, p.Name = u.css, name
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// pageHeaders are the headers of every HTML page.
func pageHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	// Nothing inline and nothing from elsewhere: a hostile package
	// description cannot run anything even if escaping failed.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "same-origin")
}

type errorData struct {
	Code    int
	Status  string
	Message string
}

func (u *UI) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if code >= 500 {
		u.log.Error("web request", "path", r.URL.Path, "status", code, "err", msg)
	}
	u.render(w, r, code, "error", page{Title: http.StatusText(code), Data: errorData{Code: code, Status: http.StatusText(code), Message: msg}})
}

// failErr shows an error of the read API with the status the API gives it.
func (u *UI) failErr(w http.ResponseWriter, r *http.Request, err error) {
	u.fail(w, r, api.HTTPStatus(err), err.Error())
}

// Links. Every segment is escaped: names come from databases.

func pkgURL(distro, repo, arch, name string) string {
	return "/ui/pkg/" + url.PathEscape(distro) + "/" + url.PathEscape(repo) + "/" + url.PathEscape(arch) + "/" + url.PathEscape(name)
}

func repoURL(distro, repo string) string {
	return "/ui/repo/" + url.PathEscape(distro) + "/" + url.PathEscape(repo)
}

// folderURL is the tree folder of a repo's arch, with its trailing '/'.
func (u *UI) folderURL(distro, repo, arch string) string {
	return escapePath("/"+u.cfg.RepoDir(distro, repo, arch)) + "/"
}

func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

var funcs = template.FuncMap{
	"bytes":   humanBytes,
	"ago":     ago,
	"when":    when,
	"unix":    func(s int64) time.Time { return time.Unix(s, 0) },
	"pkgURL":  pkgURL,
	"repoURL": repoURL,
	"percent": func(f float64) string {
		if math.IsNaN(f) {
			return "–"
		}
		return fmt.Sprintf("%.1f%%", 100*f)
	},
	"plural": plural,
	"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"day":    func(t time.Time) string { return t.UTC().Format("2006-01-02") },
}

// humanBytes formats a size with a binary unit: "3.4 MiB"; negative is
// unknown.
func humanBytes(n int64) string {
	if n < 0 {
		return "–"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// plural is "1 package", "2 packages".
func plural(n any, word string) string {
	s := fmt.Sprint(n)
	if s != "1" {
		word += "s"
	}
	return s + " " + word
}

// when is an absolute time in UTC, as mirrors show it.
func when(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// ago is a time relative to now: "5 min ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	future := d < 0
	if future {
		d = -d
	}
	if d < 5*time.Second {
		// A hosted db's Last-Modified may be a second ahead: it strictly
		// increases even for two builds within one second.
		return "just now"
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d.Hours()))
	default:
		s = fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}
