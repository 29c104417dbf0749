package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/accesslog"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/cluster"
	"github.com/mirrord/mirrord/internal/fastpath"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/lockfree"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

// Handler serves the tree.
type Handler struct {
	catalog *catalog.Catalog // routing, mirrors
	store   *store.Store
	fetcher *fetch.Fetcher
	flights *lockfree.Group // the fetcher's
	cache   config.Cache
	log     *slog.Logger
	metrics *Metrics
	missing negativeCache
	index   http.Handler // folders; nil: 404
	// requests hears of the packages of proxy repos that clients get;
	// nil: nobody listens.
	requests Recorder
	// presign, if set, answers hits on files in the shared storage with
	// a redirect (see redirect.go).
	presign       Presigner
	presignExpiry time.Duration
	// forward, if set, is a cluster's: see Options.HostedForward.
	forward func(http.ResponseWriter, *http.Request) bool
}

// Recorder is told of each package file (or its .sig) of a proxy repo
// that a client got, from the tree or from upstream: what the prefetch
// (internal/prefetch) keeps fresh. Requested runs on the hit path: it
// must be cheap and never block.
type Recorder interface {
	Requested(t catalog.Target)
}

// Options configures New.
type Options struct {
	// Fetcher brings misses into the tree; it is shared with the mirror
	// sync so that a client joins a download the sync started. Nil: a
	// private one.
	Fetcher *fetch.Fetcher
	// Index answers paths that name no file (folders, for the HTML
	// index of internal/web); nil answers 404.
	Index http.Handler
	// Requests, if set, is told of every package of a proxy repo served.
	Requests Recorder
	// Redirect, if set, answers a hit on a package that is in the shared
	// storage with 307 to a URL of it there that expires after
	// RedirectExpiry (storage.s3.redirect).
	Redirect       Presigner
	RedirectExpiry time.Duration
	// HostedForward, if set, is offered every request for a hosted
	// repo's database or its signature first: in a cluster one node at a
	// time publishes the hosted repos, and a client that saw its upload
	// published must find it in the db whichever node it reaches. It
	// answers from the publisher and returns true; false (this node
	// publishes, or the publisher cannot be reached) serves the tree's
	// copy. (The packages never change under a name: every node serves
	// them, a miss filled from the shared storage.)
	HostedForward func(http.ResponseWriter, *http.Request) bool
	// Metrics counts the requests (NewMetrics over the Fetcher's
	// flights); nil: New registers its own on Registerer.
	Metrics    *Metrics
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// New builds the tree handler for cat's repos over st. Misses are fetched
// from the catalog's mirror sets; a catalog without an upstream client
// serves only what is in the tree.
func New(cat *catalog.Catalog, st *store.Store, opts Options) (*Handler, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Fetcher == nil {
		opts.Fetcher = fetch.New(st, fetch.Options{Catalog: cat, Logger: opts.Logger, Registerer: opts.Registerer})
	}
	cfg := cat.Config()
	h := &Handler{
		catalog: cat,
		index:   opts.Index,
		store:   st,
		fetcher: opts.Fetcher,
		flights: opts.Fetcher.Flights(),
		cache:   cfg.Cache,
		log:     opts.Logger,
	}
	h.requests = opts.Requests
	h.presign, h.presignExpiry = opts.Redirect, opts.RedirectExpiry
	h.forward = opts.HostedForward
	for _, r := range cat.Repos() {
		if r.Mirrors() != nil {
			opts.Fetcher.Label(r.Key)
		}
	}
	h.metrics = opts.Metrics
	if h.metrics == nil {
		h.metrics = NewMetrics(opts.Registerer, cat, h.flights)
	}
	return h, nil
}

// ServeHTTP serves GET and HEAD of files in the tree.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	t, err := h.catalog.Resolve(r.URL.Path)
	if err != nil {
		if h.index != nil {
			h.index.ServeHTTP(w, r)
			return
		}
		httpError(w, "not found", http.StatusNotFound)
		return
	}
	if h.forwards(t, t.Mutable()) && h.forward(w, r) {
		return
	}
	ms := h.catalog.Mirrors(t)
	switch {
	case h.revalidates(t, t.Mutable()):
		h.serveMutable(w, r, t, ms)
	case h.redirected(w, r, t):
	case h.serveHit(w, r, t, resultHit):
	case ms != nil && t.Mode != config.ModeHosted && !t.Mutable():
		// A package not in the tree: fetch it (in mirror repos too, as a
		// fallback for a file the sync has not fetched yet).
		h.serveMiss(w, r, t, ms)
	case t.Mode == config.ModeHosted && !t.Mutable() && h.fetcher.Shares():
		// A hosted package in a cluster: its publisher put it in the
		// shared storage before any database named it.
		h.serveMiss(w, r, t, nil)
	default:
		// Hosted, no upstream, or a mirror's database: the tree is all
		// there is. (A mirror's databases change only through the sync,
		// which swaps them in consistently; never fetch one behind its back.)
		h.counted(r, t, resultNotFound)
		httpError(w, "not found", http.StatusNotFound)
	}
}

// forwards reports whether t, a hosted repo's database or its signature
// in a cluster, is offered to Options.HostedForward first.
func (h *Handler) forwards(t catalog.Target, mutable bool) bool {
	return h.forward != nil && mutable && t.Mode == config.ModeHosted
}

// revalidates reports whether t is a proxy repo's database, signature or
// sync stamp, which is served from the tree only while fresh, else after
// a revalidation (serveMutable). Every other file is served from the tree
// when it is there. Both serving paths decide by it; mutable is
// t.Mutable(), which they have at hand, and the mirror set is looked up
// last, so that a hit on a package costs no lookup of it.
func (h *Handler) revalidates(t catalog.Target, mutable bool) bool {
	return mutable && t.Mode == config.ModeProxy && h.catalog.Mirrors(t) != nil
}

// fresh reports whether a file that revalidates, last checked as m says,
// is young enough (cache.db_max_age) to be served without asking upstream.
// now is the time of the request.
func (h *Handler) fresh(m store.Meta, now time.Time) bool {
	return now.Sub(m.FetchedAt) < h.cache.DBMaxAge
}

// AppendHit is ServeHTTP for the fast path (internal/fastpath), which
// calls it for a GET with no Range and at most If-Modified-Since and
// If-None-Match: when ServeHTTP would answer req from the tree (a file of
// a mirror or hosted repo, a package, or a proxy repo's database while
// younger than cache.db_max_age), it counts the hit as ServeHTTP does,
// appends the same header fields to dst and returns the rest: 304 Not
// Modified as http.ServeContent would decide it, else the body, a small
// file from memory, any other as a shared open file for sendfile(2).
// Anything else (a miss, a database due for revalidation, a folder) is
// ServeHTTP's: ok is false.
func (h *Handler) AppendHit(dst []byte, req *fastpath.Request) (head []byte, resp fastpath.Response, ok bool) {
	if !plainPathOK(req.Path) {
		return dst, resp, false
	}
	t, err := h.catalog.Resolve(req.Path)
	if err != nil {
		return dst, resp, false
	}
	mutable := t.Mutable()
	if h.forwards(t, mutable) {
		return dst, resp, false // ServeHTTP's, which forwards
	}
	mustBeFresh := h.revalidates(t, mutable)
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	data, f, m, ok := h.store.Hit(t.Rel, now)
	if !ok && mutable && !mustBeFresh {
		// A hosted repo's {repo}.db is a link to {repo}.db.tar.gz: serve
		// the target, as opening the link does on net/http's path.
		if target, isLink := h.store.Readlink(t.Rel); isLink {
			data, f, m, ok = h.store.Hit(target, now)
		}
	}
	if !ok {
		return dst, resp, false
	}
	notModified, ok := req.NotModified(m.LastModified)
	if !ok || mustBeFresh && !h.fresh(m, now) || h.redirects(mutable, m) {
		// A date only net/http reads, a database serveMutable
		// revalidates first, or a redirect to the shared storage.
		if f != nil {
			f.Release()
		}
		return dst, resp, false
	}
	h.metrics.request(t, resultHit) // the fast path logs its lines itself
	h.requested(t, mutable)
	if !mutable {
		h.fetcher.Reshare(t.Rel, m)
	}
	switch {
	case notModified:
		if f != nil {
			f.Release()
		}
		resp = fastpath.Response{NotModified: true}
	case f != nil:
		resp = fastpath.Response{File: f, Size: m.Size}
		h.metrics.served(t, m.Size)
	default:
		resp = fastpath.Response{Data: data}
		h.metrics.served(t, m.Size)
	}
	return appendFileHeaders(dst, mutable, m, notModified), resp, true
}

// plainPathOK is CheckPath for a path the fast path parsed, which has no
// '%' (so nothing encoded) and no control or non-ASCII byte: the same
// rules in one pass.
func plainPathOK(path string) bool {
	if len(path) == 0 || path[0] != '/' || len(path) > 1024 {
		return false
	}
	seg := 1 // where the current segment starts
	for i := 1; i <= len(path); i++ {
		if i < len(path) {
			c := path[i]
			if c < 0x20 || c >= 0x7f || c == '\\' || c == '%' {
				return false
			}
			if c != '/' {
				continue
			}
		}
		switch s := path[seg:i]; {
		case s == "." || s == "..", s == "" && i < len(path):
			return false
		}
		seg = i + 1
	}
	return true
}

// serveHit serves t from the tree if it is there; false means a miss.
// The store decides as for the fast path (store.Hit): small files come
// from memory, others from the descriptor it keeps open per hot file,
// read at offsets (and sent by sendfile(2) through fastpath.StallConn).
// A file the index does not hold (a hosted repo's {repo}.db link) is
// opened for the request.
func (h *Handler) serveHit(w http.ResponseWriter, r *http.Request, t catalog.Target, result string) bool {
	data, sf, m, ok := h.store.Hit(t.Rel, time.Now())
	if !ok {
		return h.serveOpened(w, r, t, result)
	}
	if !t.Mutable() {
		h.fetcher.Reshare(t.Rel, m)
	}
	var body io.ReadSeeker
	if sf != nil {
		defer sf.Release()
		body = io.NewSectionReader(sf, 0, m.Size)
	} else {
		body = bytes.NewReader(data)
	}
	h.serveBody(w, r, t, result, body, m.LastModified, m.Size)
	return true
}

// serveOpened serves t from a descriptor of its own, opened through the
// folder's os.Root (so that no link leaves the tree).
func (h *Handler) serveOpened(w http.ResponseWriter, r *http.Request, t catalog.Target, result string) bool {
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
	h.serveBody(w, r, t, result, f, info.ModTime(), info.Size())
	return true
}

// serveBody answers r with the file body: whole for a plain GET, else
// through http.ServeContent (a range, a condition, a HEAD).
func (h *Handler) serveBody(w http.ResponseWriter, r *http.Request, t catalog.Target, result string, body io.ReadSeeker, mod time.Time, size int64) {
	h.counted(r, t, result)
	h.requested(t, t.Mutable())
	setFileHeaders(w.Header(), t)
	cw := &countingWriter{ResponseWriter: w}
	if plainGet(r) {
		setLengthHeaders(w.Header(), mod, size)
		// The status first: net/http then hands a file body straight to
		// the connection's ReadFrom (sendfile(2)), without copying its
		// first 512 bytes for a Content-Type sniff nobody needs.
		cw.WriteHeader(http.StatusOK)
		io.Copy(cw, body) // one write for memory
	} else {
		http.ServeContent(cw, r, "", mod, body)
	}
	h.servedTo(r, t, cw.n)
}

// plainGet is a GET with no Range and no condition: the common case, which
// needs none of http.ServeContent's work (two seeks and a read to find the
// size and sniff, which we know already).
func plainGet(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, k := range conditionalHeaders {
		if _, ok := r.Header[k]; ok {
			return false
		}
	}
	return true
}

var conditionalHeaders = []string{"Range", "If-Modified-Since", "If-None-Match", "If-Range", "If-Match", "If-Unmodified-Since"}

// serveMutable serves a database, signature or sync stamp of a proxy
// repo: from the tree while younger than cache.db_max_age, else after a
// coalesced revalidation, or stale if upstream fails.
func (h *Handler) serveMutable(w http.ResponseWriter, r *http.Request, t catalog.Target, ms *upstream.MirrorSet) {
	meta, err := h.store.Stat(t.Rel)
	cached := err == nil
	if cached && h.fresh(meta, time.Now()) {
		h.serveHit(w, r, t, resultHit)
		return
	}
	if !cached && h.missing.has(t.Rel) {
		h.counted(r, t, resultNotFound)
		httpError(w, "not found", http.StatusNotFound)
		return
	}
	f, rd, leader := h.fetcher.Join(r.Context(), fetch.JobFor(t, ms, h.cache.DBMaxAge))
	result := resultRevalidated
	if !cached {
		result = resultMiss
		if !leader {
			result = resultCoalesced
		}
	}
	err = h.serveFlight(w, r, t, f, rd, result)
	if err == nil {
		return
	}
	if cached && !errors.Is(err, errResponseStarted) {
		// stale-if-error: upstream failed or lost the file; the last good
		// copy is better than nothing (stale-if-error, RFC 5861).
		age := time.Since(meta.FetchedAt).Truncate(time.Second)
		w.Header().Set("Age", fmt.Sprint(int64(age.Seconds())))
		w.Header().Set("Warning", `110 mirrord "Response is Stale"`)
		h.log.Warn("serving stale copy", "file", t.Rel, "age_seconds", age.Seconds(), "err", err)
		h.serveHit(w, r, t, resultStale)
		return
	}
	h.failed(w, r, t, err)
}

// serveMiss fetches an immutable file: the request joins the flight for
// it or starts one, then streams the growing file.
func (h *Handler) serveMiss(w http.ResponseWriter, r *http.Request, t catalog.Target, ms *upstream.MirrorSet) {
	if h.missing.has(t.Rel) {
		h.counted(r, t, resultNotFound)
		notFoundUpstream(w, r)
		return
	}
	if r.Method == http.MethodHead && ms != nil && h.flights.Lookup(t.Rel) == nil {
		h.serveHeadMiss(w, r, t, ms)
		return
	}
	f, rd, leader := h.fetcher.Join(r.Context(), fetch.JobFor(t, ms, h.cache.DBMaxAge))
	result := resultMiss
	if !leader {
		result = resultCoalesced
	}
	if err := h.serveFlight(w, r, t, f, rd, result); err != nil {
		h.failed(w, r, t, err)
	}
}

// serveHeadMiss answers a HEAD for a file that is neither cached nor in
// flight by asking upstream with HEAD: a HEAD must not download the file.
func (h *Handler) serveHeadMiss(w http.ResponseWriter, r *http.Request, t catalog.Target, ms *upstream.MirrorSet) {
	resp, err := ms.Fetch(r.Context(), upstream.Request{Method: http.MethodHead, Repo: t.Repo, Arch: t.Arch, File: t.File})
	if err != nil {
		h.failed(w, r, t, err)
		return
	}
	resp.Body.Close()
	h.counted(r, t, resultMiss)
	setFileHeaders(w.Header(), t)
	if resp.Size >= 0 {
		w.Header().Set("Content-Length", fmt.Sprint(resp.Size))
	}
	if !resp.LastModified.IsZero() {
		w.Header().Set("Last-Modified", resp.LastModified.UTC().Format(http.TimeFormat))
	}
	w.Header().Set("Accept-Ranges", "bytes")
	w.WriteHeader(http.StatusOK)
}

// errResponseStarted means the response headers were already sent when
// the flight failed: the only honest end is to break the connection.
var errResponseStarted = errors.New("response started")

// serveFlight streams a flight's file to one client. It returns an error
// only while nothing has been written, so the caller can still choose the
// answer (an error status, or a stale copy).
func (h *Handler) serveFlight(w http.ResponseWriter, r *http.Request, t catalog.Target, f *lockfree.Flight, rd *lockfree.Reader, result string) error {
	defer func() {
		rd.Close()
		if !h.cache.FillOnAbort {
			select {
			case <-f.Done():
			default:
				h.flights.Abandon(f, nil) // if nobody reads, the cache does not want it
			}
		}
	}()
	meta, err := rd.Wait()
	if errors.Is(err, lockfree.ErrNoFile) {
		// The fill found the file in the tree (a 304, or a flight that
		// finished just before ours): serve it from there.
		if h.serveHit(w, r, t, result) {
			return nil
		}
		return fmt.Errorf("%s vanished from the tree", t.Rel)
	}
	if err != nil {
		return err
	}
	h.counted(r, t, result)
	setFileHeaders(w.Header(), t)
	if meta.Size < 0 && (r.Header.Get("Range") != "" || r.Method == http.MethodHead) {
		// Upstream sent no length: a Range or a HEAD needs the whole file.
		select {
		case <-f.Done():
		case <-r.Context().Done():
			return nil
		}
		if err := f.Err(); err != nil {
			return err
		}
		h.serveHit(w, r, t, result)
		return nil
	}
	// Headers go out at once, before the first body byte: pacman gives up
	// on a server that sends nothing for 10 s.
	cw := &countingWriter{ResponseWriter: w, flushHeader: true}
	er := &errReader{r: rd}
	if meta.Size < 0 {
		// Unknown length: stream it chunked, as upstream did.
		if !meta.ModTime.IsZero() {
			w.Header().Set("Last-Modified", meta.ModTime.UTC().Format(http.TimeFormat))
		}
		w.WriteHeader(http.StatusOK)
		io.Copy(cw, er)
	} else {
		http.ServeContent(cw, r, "", meta.ModTime, er)
	}
	h.servedTo(r, t, cw.n)
	if er.err != nil && !errors.Is(er.err, io.EOF) && r.Context().Err() == nil {
		// The transfer broke after the headers went out: a short body
		// must never look complete, so the connection is cut.
		h.log.Warn("transfer broke mid-body", "file", t.Rel, "bytes", cw.n, "err", er.err)
		panic(http.ErrAbortHandler)
	}
	h.requested(t, t.Mutable())
	return nil
}

// requested tells the Recorder that a client got t, when t is a package
// (or its .sig) of a proxy repo.
func (h *Handler) requested(t catalog.Target, mutable bool) {
	if h.requests != nil && !mutable && t.Mode == config.ModeProxy {
		h.requests.Requested(t)
	}
}

// counted counts a request's result, and notes it for its access log
// line.
func (h *Handler) counted(r *http.Request, t catalog.Target, result string) {
	if !cluster.FromPeer(r.Context()) { // counted by the node its client asked
		h.metrics.request(t, result)
	}
	accesslog.SetResult(r.Context(), result)
}

// servedTo counts n body bytes sent for r, unless to a peer (see counted).
func (h *Handler) servedTo(r *http.Request, t catalog.Target, n int64) {
	if !cluster.FromPeer(r.Context()) {
		h.metrics.served(t, n)
	}
}

// failed answers a request whose fetch failed before any byte was sent.
func (h *Handler) failed(w http.ResponseWriter, r *http.Request, t catalog.Target, err error) {
	switch {
	case errors.Is(err, upstream.ErrNotFound):
		h.missing.add(t.Rel, h.cache.NegativeTTL)
		h.counted(r, t, resultNotFound)
		h.log.Debug("not found upstream", "file", t.Rel)
		notFoundUpstream(w, r)
	case errors.Is(err, fetch.ErrVerify):
		h.counted(r, t, resultError)
		h.log.Warn("upstream sent a bad file", "file", t.Rel, "err", err)
		httpError(w, "upstream sent a bad file", http.StatusBadGateway)
	default:
		h.counted(r, t, resultError)
		h.log.Warn("fetch", "file", t.Rel, "err", err)
		httpError(w, "upstream unavailable", http.StatusBadGateway)
	}
}

// notFoundUpstream answers 404 for a file upstream does not have. A peer
// is told so (cluster.NotFoundUpstream): any other 404 of its request,
// such as a repo this node does not serve, makes it fetch the file itself.
func notFoundUpstream(w http.ResponseWriter, r *http.Request) {
	if cluster.FromPeer(r.Context()) {
		w.Header().Set(cluster.NotFoundUpstream, "1")
	}
	httpError(w, "not found", http.StatusNotFound)
}

// Guard refuses requests whose path is never valid (see CheckPath) with
// 400 before any handler runs. It sits in front of the whole server so that
// ServeMux never "cleans" a hostile path into a redirect. It also bounds
// how long a request body may stall (see limitBodyStall).
func Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := catalog.CheckPath(r.URL.Path, r.URL.EscapedPath()); err != nil {
			httpError(w, "bad path", http.StatusBadRequest)
			return
		}
		next.ServeHTTP(w, limitBodyStall(w, r, bodyStall))
	})
}

// httpError writes a short plain-text error: pacman only reads the status.
func httpError(w http.ResponseWriter, msg string, code int) {
	body := strings.TrimSpace(msg) + "\n"
	hd := w.Header()
	hd.Del("Cache-Control")
	hd.Set("Content-Length", strconv.Itoa(len(body))) // the connection stays on the fast path (see fastpath.reclaim)
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// countingWriter counts body bytes. It forwards ReadFrom so that serving a
// file still uses sendfile(2).
type countingWriter struct {
	http.ResponseWriter
	n           int64
	flushHeader bool // flush right after WriteHeader
}

func (c *countingWriter) WriteHeader(code int) {
	c.ResponseWriter.WriteHeader(code)
	if c.flushHeader {
		http.NewResponseController(c.ResponseWriter).Flush()
	}
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

// errReader remembers the first read error, which ServeContent swallows.
type errReader struct {
	r   *lockfree.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

func (e *errReader) Seek(off int64, whence int) (int64, error) { return e.r.Seek(off, whence) }
