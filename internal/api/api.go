package api

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/hosted"
	"github.com/mirrord/mirrord/internal/pgp"
	"github.com/mirrord/mirrord/internal/prefetch"
	"github.com/mirrord/mirrord/internal/sync"
)

// Tree is what the API reads of the data directory (internal/store).
type Tree interface {
	Open(rel string) (*os.File, error)
	Size() int64
	Files() int64
}

// Publisher is the write side of hosted repos (internal/hosted.Service).
type Publisher interface {
	NewUpload(distro, repo string) (*hosted.Upload, error)
	MaxSize() int64
	Delete(ctx context.Context, distro, repo, arch, name string) error
	Job(id string) (hosted.Job, error)
	// Jobs is the latest jobs of distro/repo ("" matches any), newest
	// first, at most limit.
	Jobs(distro, repo string, limit int) ([]hosted.Job, error)
	WaitJob(ctx context.Context, id string) (hosted.Job, error)
	Pending() int
	// Key is the public signing key of a hosted repo, false when the
	// repo is not signed.
	Key(distro, repo string) (pgp.Key, bool)
	// SignedBy is the fingerprint of the key whose signature of a
	// published package file mirrord verified (or made), "" if none.
	SignedBy(distro, repo, arch, file string) string
}

// Syncer is the mirror sync engine (internal/sync.Scheduler). Trigger
// starts a sync of one mirror repo, or of every mirror repo of the distro
// when repo is "", and returns at once; an unknown or non-mirror repo
// wraps sync.ErrUnknownRepo. States is the "sync" of /api/v1/status.
type Syncer interface {
	Trigger(distro, repo string) error
	States() []sync.State
}

// Prefetcher is the prefetch of proxy repos (internal/prefetch.Prefetcher).
// Runs is the "prefetch" of /api/v1/status.
type Prefetcher interface {
	Runs() []prefetch.Run
}

// Options configures New. Nil Publisher or Syncer make their endpoints
// answer 503; nil InFlight reports 0; nil Prefetcher leaves "prefetch"
// out of the status.
type Options struct {
	Publisher Publisher
	Syncer    Syncer
	Prefetch  Prefetcher
	InFlight  func() int // fetches in flight (internal/lockfree)
	// AdminToken is the sha256 of the admin token (see AdminToken), used
	// only when api.tokens is empty; with neither, every write is refused.
	AdminToken []byte
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Handler serves /api/v1/. Mount it at that prefix.
type Handler struct {
	cfg      *config.Config
	tree     Tree
	pub      Publisher
	syncer   Syncer
	prefetch Prefetcher
	inFlight func() int
	auth     *auth
	catalog  *catalog.Catalog // the repos and their parsed dbs
	log      *slog.Logger
	metrics  *metrics
	mux      *http.ServeMux
}

// New builds the API over cat's repos and the tree.
func New(cat *catalog.Catalog, tree Tree, opts Options) *Handler {
	cfg := cat.Config()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.InFlight == nil {
		opts.InFlight = func() int { return 0 }
	}
	h := &Handler{
		cfg: cfg, tree: tree, pub: opts.Publisher, syncer: opts.Syncer, inFlight: opts.InFlight,
		auth: newAuth(cfg, opts.AdminToken), catalog: cat, log: opts.Logger, mux: http.NewServeMux(),
	}
	h.prefetch = opts.Prefetch
	h.metrics = newMetrics(opts.Registerer)
	m := h.mux
	m.HandleFunc("GET /api/v1/repos", h.repos)
	m.HandleFunc("GET /api/v1/repos/{distro}/{repo}/{arch}/packages", h.listPackages)
	m.HandleFunc("GET /api/v1/repos/{distro}/{repo}/{arch}/packages/{name}", h.getPackage)
	m.HandleFunc("GET /api/v1/repos/{distro}/{repo}/key", h.key)
	m.HandleFunc("POST /api/v1/repos/{distro}/{repo}/packages", h.upload)
	m.HandleFunc("DELETE /api/v1/repos/{distro}/{repo}/{arch}/packages/{name}", h.deletePackage)
	m.HandleFunc("GET /api/v1/jobs", h.jobs)
	m.HandleFunc("GET /api/v1/jobs/{id}", h.job)
	m.HandleFunc("POST /api/v1/sync/{distro}", h.sync)
	m.HandleFunc("POST /api/v1/sync/{distro}/{repo}", h.sync)
	m.HandleFunc("GET /api/v1/status", h.status)
	m.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, errorf(http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path))
	})
	return h
}

// ServeHTTP routes the request and counts its status.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	h.mux.ServeHTTP(sw, r)
	h.metrics.request(sw.code)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// repoConfig resolves {distro}/{repo} of a request, or a 404.
func (h *Handler) repoConfig(distro, repo string) (config.Distro, config.Repo, error) {
	d, ok := h.cfg.Distros[distro]
	if !ok {
		return d, config.Repo{}, errorf(http.StatusNotFound, "no distro "+strconv.Quote(distro))
	}
	rc, ok := d.Repos[repo]
	if !ok {
		return d, rc, errorf(http.StatusNotFound, "no repo "+strconv.Quote(distro+"/"+repo))
	}
	return d, rc, nil
}
