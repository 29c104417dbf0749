package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/hosted"
	"github.com/mirrord/mirrord/internal/lease"
	"github.com/mirrord/mirrord/internal/pgp"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/s3obj"
)

// clusterPublisher is the hosted repos of a node of a cluster
// (docs/CLUSTER.md, "Hosted repos over one bucket"). Their publish pipeline, a
// hosted.Service over the bucket, runs on one node at a time: the holder
// of the lease "hosted". Every other node forwards to it what only the
// publisher can answer for sure (uploads, deletes, jobs, the API's views
// of a hosted repo, the hosted databases and their signatures), follows
// the databases it shares into its own tree (served when the publisher
// cannot be reached, and read by the catalog), and serves the hosted
// packages itself, a miss filled from the bucket. Every node, the
// publisher too, checks jobs (hosted.Checker): whichever claims one
// first parses it, and the publisher commits what it found.
//
// It is the API's Publisher on every node: while this node publishes,
// the running Service; else every write is refused as busy (forward
// sends one here only when the publisher cannot be reached, or in the
// moment of a handover).
type clusterPublisher struct {
	cfg    *config.Config
	cat    *catalog.Catalog
	st     *store.Store
	bucket *s3obj.Bucket
	leases *lease.Manager
	holder string // this process in the bucket (holder)
	opts   hosted.Options
	log    *slog.Logger

	checker    *hosted.Checker // this node's share of the jobs' checks
	follower   *hosted.Follower
	treeMu     stdsync.Mutex // held by a follow, and by the start and end of a publish
	publishing bool          // guarded by treeMu

	svc     atomic.Pointer[hosted.Service]      // while this node publishes
	metrics atomic.Pointer[prometheus.Registry] // svc's
	where   atomic.Pointer[publisherAt]         // the last publisher record read
	proxy   *httputil.ReverseProxy
}

// publisherKey is the record the publisher leaves in the bucket once it
// holds the lease: where the other nodes forward to.
const publisherKey = "_mirrord/hosted/publisher"

// publisherLease is the lease the publisher holds, and its ttl: a dead
// publisher's successor starts within about that long.
const (
	publisherLease = "hosted"
	publisherTTL   = 15 * time.Second
)

// forwardedHeader marks a request one node forwarded to the publisher:
// one that arrives at a node that does not publish (any more) is answered
// there, never forwarded again.
const forwardedHeader = "Mirrord-Forwarded-By"

type publisherAt struct {
	URL    string    `json:"url"`
	Holder string    `json:"holder"`
	Token  uint64    `json:"token"`
	read   time.Time // when this node read it
}

// newClusterPublisher is the hosted repos of c's node; opts are those
// of each hosted.Service it runs, but their Registerer and Bucket, and
// opts.Registerer takes the node's Checker's metric.
func newClusterPublisher(cfg *config.Config, c *core, st *store.Store, opts hosted.Options) (*clusterPublisher, error) {
	p := &clusterPublisher{cfg: cfg, cat: c.catalog, st: st, bucket: c.bucket, leases: c.leases, holder: c.holder, opts: opts, log: opts.Logger,
		follower: hosted.NewFollower(c.catalog, st, c.bucket, opts.Logger)}
	copts := opts
	copts.Bucket = c.bucket
	copts.Checked = func() {
		if s := p.svc.Load(); s != nil {
			s.Checked() // a result of this node's: commit it now
		}
	}
	checker, err := hosted.NewChecker(c.catalog, st, c.holder, copts)
	if err != nil {
		return nil, err
	}
	p.checker = checker
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(targetKey{}).(*url.URL))
			pr.Out.Header.Set(forwardedHeader, cfg.Cluster.Node)
		},
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     time.Minute,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.where.Store(nil) // read the record again next time
			p.log.Warn("forward to the publisher", "path", r.URL.Path, "err", err)
			// Before any byte of the answer (a failed copy of the body
			// breaks the connection instead): forward's caller answers.
			r.Context().Value(attemptKey{}).(*attempt).failed = true
		},
		ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	return p, nil
}

type (
	targetKey  struct{}
	attemptKey struct{}
	attempt    struct{ failed bool }
)

// trackedWriter notes whether the forward wrote anything: a forward that
// failed before may still be answered here.
type trackedWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackedWriter) WriteHeader(code int) { w.wrote = true; w.ResponseWriter.WriteHeader(code) }
func (w *trackedWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}
func (w *trackedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// followEvery is how often a node that does not publish looks at the
// hosted databases' manifests.
const followEvery = time.Second

// Run takes the lease in turn with the other nodes and publishes while it
// holds it, and follows the publisher's databases while it does not,
// until ctx ends; its Checker checks jobs all along, whoever publishes.
func (p *clusterPublisher) Run(ctx context.Context) error {
	go p.follow(ctx)
	checked := make(chan struct{})
	go func() { p.checker.Run(ctx); close(checked) }()
	defer func() { <-checked }() // a check under way ends before the store closes
	for ctx.Err() == nil {
		err := p.leases.RunInTurn(ctx, publisherLease, p.holder, publisherTTL, time.Second, p.publish)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("publishing the hosted repos stopped", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// follow keeps the tree's hosted databases as the publisher shares
// them, while this node does not publish, until ctx ends.
func (p *clusterPublisher) follow(ctx context.Context) {
	t := time.NewTicker(followEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.treeMu.Lock()
		if !p.publishing {
			if err := p.follower.Follow(ctx); err != nil && ctx.Err() == nil {
				p.log.Debug("follow the publisher's databases", "err", err)
			}
		}
		p.treeMu.Unlock()
	}
}

// publish runs the hosted repos here while ctx (the lease's hold) lasts.
func (p *clusterPublisher) publish(ctx context.Context, token uint64) error {
	p.treeMu.Lock()
	p.publishing = true
	p.treeMu.Unlock()
	defer func() {
		p.treeMu.Lock()
		p.publishing = false
		p.follower.Forget() // this node's builds are in the tree now
		p.treeMu.Unlock()
	}()
	reg := prometheus.NewRegistry()
	opts := p.opts
	opts.Registerer, opts.Bucket, opts.Token = reg, p.bucket, token
	// An upload is acknowledged only while the hold lasts: a job recorded
	// then is one the next holder finds when it takes over.
	opts.Hold = ctx
	opts.Queued = p.checker.Poke // this node checks its own uploads first
	start := time.Now()
	svc, err := hosted.New(p.cat, p.st, opts)
	if err != nil {
		return err
	}
	rec, _ := json.Marshal(publisherAt{URL: p.cfg.Cluster.Advertise, Holder: p.holder, Token: token})
	if err := p.bucket.Put(ctx, publisherKey, bytes.NewReader(rec), store.BytesMeta(rec)); err != nil {
		return fmt.Errorf("name this node the publisher: %w", err)
	}
	p.metrics.Store(reg)
	p.svc.Store(svc)
	p.log.Info("publishing the hosted repos here", "token", token, "load_seconds", time.Since(start).Seconds())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	<-ctx.Done()
	p.svc.Store(nil) // from now on forwarded: another node may publish
	<-done
	p.metrics.Store(nil)
	p.log.Info("no longer publishing the hosted repos here", "why", context.Cause(ctx))
	return nil
}

// forward answers r from the publisher, unless this node is it: false
// leaves r to this node (which publishes, or has its followed copies
// and answers a write as busy), also when the publisher cannot be
// reached and nothing was written yet.
func (p *clusterPublisher) forward(w http.ResponseWriter, r *http.Request) bool {
	if p.svc.Load() != nil || r.Header.Get(forwardedHeader) != "" {
		return false // here, or sent here by a node that took us for the publisher
	}
	target, err := p.publisher(r.Context())
	if err != nil {
		p.log.Debug("no publisher to forward to: answered here", "path", r.URL.Path, "err", err)
		return false
	}
	tw, try := &trackedWriter{ResponseWriter: w}, &attempt{}
	ctx := context.WithValue(context.WithValue(r.Context(), targetKey{}, target), attemptKey{}, try)
	p.proxy.ServeHTTP(tw, r.WithContext(ctx))
	return !try.failed || tw.wrote
}

// publisherCache is how long the publisher record read is trusted; a
// failed forward reads it again at once.
const publisherCache = 2 * time.Second

// publisher is the URL of the node that publishes, from its record in
// the bucket: one of cluster.peers, and not this node (which would
// publish itself if it held the lease).
func (p *clusterPublisher) publisher(ctx context.Context) (*url.URL, error) {
	at := p.where.Load()
	if at == nil || time.Since(at.read) > publisherCache {
		body, _, err := p.bucket.Get(ctx, publisherKey)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(body, 4<<10))
		body.Close()
		if err != nil {
			return nil, err
		}
		at = &publisherAt{}
		if err := json.Unmarshal(data, at); err != nil {
			return nil, fmt.Errorf("the publisher record: %w", err)
		}
		at.read = time.Now()
		p.where.Store(at)
	}
	if at.URL == p.cfg.Cluster.Advertise {
		return nil, errors.New("the publisher record names this node, which does not publish")
	}
	if !slices.Contains(p.cfg.Cluster.Peers, at.URL) {
		return nil, fmt.Errorf("the publisher record names %q, not one of cluster.peers", at.URL)
	}
	return url.Parse(at.URL)
}

// forwarding wraps the API or the web UI: a request about a hosted repo
// or a job goes to the publisher unless this node is it.
func (p *clusterPublisher) forwarding(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.publisherOnly(r.URL.Path) && p.forward(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	})
}

// publisherOnly reports whether an API or web UI path is answered from
// the publish state: /api/v1/jobs[/...], and of a hosted repo
// /api/v1/repos/{distro}/{repo}/... (its packages come from the db the
// publisher builds), and the pages /ui/repo/{distro}/{repo} (with its
// recent jobs) and /ui/pkg/{distro}/{repo}/... (with the package's
// signer).
func (p *clusterPublisher) publisherOnly(path string) bool {
	if path == "/api/v1/jobs" || strings.HasPrefix(path, "/api/v1/jobs/") {
		return true
	}
	var parts []string
	if rest, ok := strings.CutPrefix(path, "/api/v1/repos/"); ok {
		if parts = strings.SplitN(rest, "/", 3); len(parts) < 3 {
			return false
		}
	} else if rest, ok := strings.CutPrefix(path, "/ui/repo/"); ok {
		parts = strings.SplitN(rest, "/", 3)
	} else if rest, ok := strings.CutPrefix(path, "/ui/pkg/"); ok {
		parts = strings.SplitN(rest, "/", 3)
	}
	if len(parts) < 2 {
		return false
	}
	d, ok := p.cfg.Distros[parts[0]]
	return ok && d.Repos[parts[1]].Mode == config.ModeHosted
}

// Gather is the running Service's metrics, none while another node
// publishes: /metrics gathers them beside the node's own.
func (p *clusterPublisher) Gather() ([]*dto.MetricFamily, error) {
	if reg := p.metrics.Load(); reg != nil {
		return reg.Gather()
	}
	return nil, nil
}

// errNotPublisher is what the Publisher methods answer while another node
// publishes: busy (503), to be tried again.
var errNotPublisher = fmt.Errorf("this node does not publish the hosted repos at the moment: %w", hosted.ErrBusy)

func (p *clusterPublisher) NewUpload(distro, repo string) (*hosted.Upload, error) {
	if s := p.svc.Load(); s != nil {
		return s.NewUpload(distro, repo)
	}
	return nil, errNotPublisher
}

func (p *clusterPublisher) MaxSize() int64 { return int64(p.cfg.Hosted.MaxUpload) }

func (p *clusterPublisher) Delete(ctx context.Context, distro, repo, arch, name string) error {
	if s := p.svc.Load(); s != nil {
		return s.Delete(ctx, distro, repo, arch, name)
	}
	return errNotPublisher
}

func (p *clusterPublisher) Job(id string) (hosted.Job, error) {
	if s := p.svc.Load(); s != nil {
		return s.Job(id)
	}
	return hosted.Job{}, errNotPublisher
}

// Jobs are the running Service's; on another node, the publisher's, by
// its API (the web UI's home page lists them on every node).
func (p *clusterPublisher) Jobs(distro, repo string, limit int) ([]hosted.Job, error) {
	if s := p.svc.Load(); s != nil {
		return s.Jobs(distro, repo, limit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), jobsTimeout)
	defer cancel()
	target, err := p.publisher(ctx)
	if err != nil {
		return nil, err
	}
	q := url.Values{"distro": {distro}, "repo": {repo}, "limit": {strconv.Itoa(min(limit, 100))}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.JoinPath("/api/v1/jobs").String()+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(forwardedHeader, p.cfg.Cluster.Node)
	resp, err := p.proxy.Transport.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("the publisher's jobs: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the publisher's jobs: %s", resp.Status)
	}
	var out struct{ Jobs []hosted.Job }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("the publisher's jobs: %w", err)
	}
	return out.Jobs, nil
}

// jobsTimeout bounds the read of the publisher's jobs for a page.
const jobsTimeout = 5 * time.Second

func (p *clusterPublisher) WaitJob(ctx context.Context, id string) (hosted.Job, error) {
	if s := p.svc.Load(); s != nil {
		return s.WaitJob(ctx, id)
	}
	return hosted.Job{}, errNotPublisher
}

func (p *clusterPublisher) Pending() int {
	if s := p.svc.Load(); s != nil {
		return s.Pending()
	}
	return 0
}

func (p *clusterPublisher) Key(distro, repo string) (pgp.Key, bool) {
	if s := p.svc.Load(); s != nil {
		return s.Key(distro, repo)
	}
	return pgp.Key{}, false
}

func (p *clusterPublisher) SignedBy(distro, repo, arch, file string) string {
	if s := p.svc.Load(); s != nil {
		return s.SignedBy(distro, repo, arch, file)
	}
	return ""
}
