package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/accesslog"
	"github.com/mirrord/mirrord/internal/api"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/cluster"
	"github.com/mirrord/mirrord/internal/fastpath"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/lease"
	"github.com/mirrord/mirrord/internal/prefetch"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/s3obj"
	"github.com/mirrord/mirrord/internal/sync"
	"github.com/mirrord/mirrord/internal/upstream"
)

// versionString is set at build time: -ldflags "-X main.versionString=v1.2.3".
var versionString = ""

func version() string {
	if versionString != "" {
		return versionString
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mirrord_build_info",
		Help: "Always 1; the version label says which mirrord runs.",
	}, []string{"version"})
	g.WithLabelValues(version()).Set(1)
	return g
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// repoList is the start's list of repos, one attribute each: its mode
// and, but for a hosted one, how many upstreams it has, e.g.
// repos.archlinux/core="proxy, 2 upstreams".
func repoList(repos []*catalog.Repo) slog.Attr {
	attrs := make([]any, 0, len(repos))
	for _, r := range repos {
		v, n := r.Mode, 0
		if m := r.Mirrors(); m != nil {
			n = len(m.Templates())
		}
		switch {
		case r.Mode == config.ModeHosted:
		case n == 1:
			v += ", 1 upstream"
		default:
			v += fmt.Sprintf(", %d upstreams", n)
		}
		attrs = append(attrs, slog.String(r.Key, v))
	}
	return slog.Group("repos", attrs...)
}

// adminToken is the sha256 of {data_dir}/admin.token, made at first
// start, when the config names no api.tokens: the defaults then still let
// this machine write (with --token-file), and nobody else. Only the
// file's path is logged, never the token.
func adminToken(cfg *config.Config, log *slog.Logger) ([]byte, error) {
	if len(cfg.API.Tokens) > 0 {
		return nil, nil
	}
	path := filepath.Join(cfg.DataDir, "admin.token")
	sum, created, err := api.AdminToken(path)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created the admin token: writes need it (mirrord publish --token-file FILE) until api.tokens is configured", "file", path)
	} else {
		log.Info("writes need the admin token (no api.tokens configured)", "file", path)
	}
	return sum, nil
}

// server is what serve runs: the fast path in front of net/http, or
// net/http alone.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// newServer serves h, with plain and conditional GETs of files in the
// tree answered by the fast path (internal/fastpath) from hit, unless
// server.fast_path is false: then net/http serves everything, with the
// same limits. Timeouts keep slow-header and idle clients from pinning
// connections (the fast path keeps net/http's, see fastpath.Server).
// There is no overall write timeout: a package download on a slow link
// may rightly take long; a client that stops reading is cut after
// fastpath.WriteStall, under one rule on either path (the fast path's
// writes, and fastpath.StallConn around every connection net/http gets).
//
// access, if not nil, gets a line for every request, on either path.
func newServer(c config.Server, h http.Handler, hit fastpath.Hit, log *slog.Logger, access *accesslog.Logger) server {
	std := &http.Server{
		Handler:           accesslog.Handler(access, h),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelDebug),
	}
	if !c.FastPath {
		return stdServer{std, func(c net.Conn) net.Conn { return fastpath.StallConn(c, fastpath.WriteStall) }}
	}
	return &fastpath.Server{Hit: hit, Fallback: std, WriteStall: fastpath.WriteStall, AccessLog: access}
}

// stdServer is net/http alone, each connection wrapped.
type stdServer struct {
	*http.Server
	wrap func(net.Conn) net.Conn
}

func (s stdServer) Serve(ln net.Listener) error {
	return s.Server.Serve(wrapListener{ln, s.wrap})
}

type wrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// routes is mirrord's URL layout (README.md, "Endpoints"): its own endpoints, and the
// tree for everything else.
func routes(metrics, ready, api, ui, tree, peers http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	if peers != nil {
		mux.Handle(cluster.PeerPath, peers)
	}
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("GET /readyz", ready)
	mux.Handle("/api/v1/", api)
	mux.Handle("GET /{$}", ui) // folders of the tree go through tree to ui.Index
	mux.Handle("/ui/", ui)
	mux.Handle("/static/", ui)
	mux.Handle("/", tree)
	return mux
}

// readiness is /readyz: 200 while serving, 503 before start and while
// shutting down, so that a load balancer drains us first.
type readiness struct{ ok atomic.Bool }

func newReadiness() *readiness { return &readiness{} }

func (r *readiness) set(ok bool) { r.ok.Store(ok) }

func (r *readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if !r.ok.Load() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// sdNotify tells systemd (Type=notify) about our state; a no-op when not
// started by systemd.
func sdNotify(state string) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	if strings.HasPrefix(sock, "@") {
		sock = "\x00" + sock[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}

// core is what serve and sync build alike over the open store: the one
// upstream client, the catalog over both, the one fetcher (its flights
// shared by every caller: one download per file), the scheduler and the
// prefetch of proxy repos (which only serve runs).
type core struct {
	up       *upstream.Client
	catalog  *catalog.Catalog
	fetcher  *fetch.Fetcher
	sched    *sync.Scheduler
	prefetch *prefetch.Prefetcher
	bucket   *s3obj.Bucket    // the shared storage (storage.backend s3), or nil
	cluster  *cluster.Cluster // the other nodes (cluster:), or nil
	leases   *lease.Manager   // the leases in the bucket, or nil
	holder   string           // who this process is in the bucket (holder), with a bucket
}

// newCore builds the core in that order; the caller closes c.up, after
// c.fetcher.Shutdown.
func newCore(cfg *config.Config, st *store.Store, log *slog.Logger, reg prometheus.Registerer) (*core, error) {
	up, err := newUpstreamClient(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	cat, err := catalog.New(cfg, st, catalog.Options{Upstream: up, Logger: log.With("component", "catalog")})
	if err != nil {
		up.Close()
		return nil, err
	}
	bucket, err := newBucket(cfg.Storage, reg)
	if err != nil {
		up.Close()
		return nil, err
	}
	fopts := fetch.Options{Catalog: cat, StallTimeout: cfg.Upstream.StallTimeout, Logger: log.With("component", "fetch"), Registerer: reg}
	if bucket != nil {
		fopts.Shared = bucket
	}
	var cl *cluster.Cluster
	if cfg.Cluster.Enabled() {
		cl, err = cluster.New(cluster.Options{Self: cfg.Cluster.Advertise, Peers: cfg.Cluster.Peers, Secret: cfg.Cluster.Secret,
			Logger: log.With("component", "cluster", "node", cfg.Cluster.Node), Registerer: reg})
		if err != nil {
			up.Close()
			return nil, err
		}
		fopts.Owners = cl
	}
	fetcher := fetch.New(st, fopts)
	sopts := sync.Options{Fetcher: fetcher, Logger: log.With("component", "sync"), Registerer: reg}
	var leases *lease.Manager
	if bucket != nil {
		leases, err = lease.New(bucket, lease.Options{Prefix: leasePrefix, Registerer: reg})
		if err != nil {
			up.Close()
			return nil, err
		}
		sopts.Bucket, sopts.Node = bucket, holder(cfg.Cluster.Node)
		sopts.Exclusive = inTurn(leases, sopts.Node)
	}
	sched, err := sync.New(cat, st, sopts)
	if err != nil {
		up.Close()
		return nil, err
	}
	pf := prefetch.New(cat, st, fetcher, prefetch.Options{Logger: log.With("component", "prefetch"), Registerer: reg})
	return &core{up: up, catalog: cat, fetcher: fetcher, sched: sched, prefetch: pf, bucket: bucket, cluster: cl,
		leases: leases, holder: sopts.Node}, nil
}

// leasePrefix is where the leases live in the bucket, beside the tree
// (a distro may not be named _mirrord).
const leasePrefix = "_mirrord/leases/"

// holder is who this process is in the bucket, the holder of its leases
// and the writer of its sync manifests: named for the logs by node (or
// host) and pid.
func holder(node string) string {
	if node == "" {
		node, _ = os.Hostname()
	}
	return fmt.Sprintf("%s/%d", node, os.Getpid())
}

// inTurn runs a named piece of work on one node at a time, under a lease
// in the bucket held by holder: the nodes' syncs of a repo take turns.
func inTurn(leases *lease.Manager, holder string) func(context.Context, string, func(context.Context) error) error {
	return func(ctx context.Context, name string, fn func(context.Context) error) error {
		return leases.RunInTurn(ctx, name, holder, 30*time.Second, time.Second, func(ctx context.Context, _ uint64) error { return fn(ctx) })
	}
}

// newBucket is the shared storage of storage.backend s3; nil for fs. It
// does not contact the store: a node starts, and serves its own disk,
// while the store is down.
func newBucket(c config.Storage, reg prometheus.Registerer) (*s3obj.Bucket, error) {
	if c.Backend != config.BackendS3 {
		return nil, nil
	}
	return s3obj.New(s3obj.Options{
		Endpoint:   c.S3.Endpoint,
		Bucket:     c.S3.Bucket,
		Prefix:     c.S3.Prefix,
		Region:     c.S3.Region,
		PathStyle:  c.S3.PathStyle,
		AccessKey:  c.S3.AccessKey,
		SecretKey:  c.S3.SecretKey,
		Registerer: reg,
	})
}

// newUpstreamClient is the one upstream client of a process, shared by
// every distro (serve) or by the one-shot sync.
func newUpstreamClient(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*upstream.Client, error) {
	return upstream.NewClient(upstream.Options{
		Retries:           cfg.Upstream.Retries,
		ConnectTimeout:    cfg.Upstream.ConnectTimeout,
		HeaderTimeout:     cfg.Upstream.HeaderTimeout,
		StallTimeout:      cfg.Upstream.StallTimeout,
		MaxConnsPerMirror: cfg.Upstream.MaxConnsPerMirror,
		UserAgent:         cfg.Upstream.UserAgent,
		Logger:            log.With("component", "upstream"),
	}, reg)
}

// isTerminal reports whether f is a terminal, where progress is drawn as
// a bar rather than logged as lines.
func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// human formats a byte count with a binary unit: "3.4 MiB".
func human(n int64) string {
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
