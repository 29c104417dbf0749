package proxy

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/store"
)

// Handler serves the tree.
type Handler struct {
	router  *Router
	store   *store.Store
	log     *slog.Logger
	metrics *metrics
}

// Options configures New.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// New builds the tree handler for cfg over st.
func New(cfg *config.Config, st *store.Store, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	return &Handler{
		router:  NewRouter(cfg),
		store:   st,
		log:     opts.Logger,
		metrics: newMetrics(opts.Registerer, cfg),
	}
}

// ServeHTTP serves GET and HEAD of files in the tree.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	t, err := h.router.Resolve(r.URL.Path)
	if err != nil {
		httpError(w, "not found", http.StatusNotFound)
		return
	}
	if h.serveHit(w, r, t) {
		return
	}
	h.metrics.request(t, resultNotFound)
	httpError(w, "not found", http.StatusNotFound)
}

// serveHit serves t from the tree if it is there; false means a miss.
func (h *Handler) serveHit(w http.ResponseWriter, r *http.Request, t Target) bool {
	f, err := h.store.Open(t.Rel)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			h.log.Warn("open cached file", "file", t.Rel, "err", err)
		}
		return false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return false
	}
	h.store.Touch(t.Rel)
	h.metrics.request(t, resultHit)
	setFileHeaders(w.Header(), t)
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", info.ModTime(), f)
	h.metrics.served(t, cw.n)
	return true
}

// Guard refuses requests whose path is never valid (see CheckPath) with
// 400 before any handler runs. It sits in front of the whole server so that
// ServeMux never "cleans" a hostile path into a redirect.
func Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := CheckPath(r.URL.Path, r.URL.EscapedPath()); err != nil {
			httpError(w, "bad path", http.StatusBadRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// setFileHeaders sets what every response for a file carries. The
// Content-Type is explicit so that ServeContent never sniffs, and no
// Content-Encoding is ever set: pacman checksums the bytes as sent.
func setFileHeaders(hd http.Header, t Target) {
	hd.Set("Content-Type", "application/octet-stream")
	if !t.Mutable() {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
}

// httpError writes a short plain-text error: pacman only reads the status.
func httpError(w http.ResponseWriter, msg string, code int) {
	hd := w.Header()
	hd.Del("Content-Length")
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, strings.TrimSpace(msg)+"\n")
}

// countingWriter counts body bytes. It forwards ReadFrom so that serving a
// file still uses sendfile(2).
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.ResponseWriter, r) // uses the inner writer's ReadFrom (sendfile)
	c.n += n
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
