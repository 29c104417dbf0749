package cluster

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

// PeerPath is the prefix of the peer route: PeerPath + a tree path.
const PeerPath = "/_mirrord/peer/"

// NotFoundUpstream is the header of the peer route's 404 for a file that
// upstream does not have. A 404 without it (a repo the owner does not
// serve, during a change of config) is no answer about the file.
const NotFoundUpstream = "Mirrord-Not-Found-Upstream"

// DrainDelay is how long a node that shuts down answers /readyz with 503
// before it stops listening: two checks of its peers (Interval 1s), so
// that they count it out before its connections are refused.
const DrainDelay = 2500 * time.Millisecond

// Options configures New.
type Options struct {
	// Self is this node's URL as the others reach it (cluster.advertise).
	Self string
	// Peers are the other nodes' URLs; Self among them is ignored.
	Peers []string
	// Secret authenticates the peer route; every node has the same one.
	Secret string
	// Interval is how often each peer's /readyz is checked; default 1s.
	// A peer that fails two checks in a row is out until one succeeds.
	Interval time.Duration
	// CheckTimeout bounds one check; default 2s, so that a node busy
	// serving is not counted out for answering late.
	CheckTimeout time.Duration
	// Transport, if set, carries the requests to peers.
	Transport  http.RoundTripper
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Cluster is this node's view of the others. Safe for concurrent use.
type Cluster struct {
	self   string
	nodes  []*node // every node, self included, sorted by URL
	secret string
	opts   Options
	client *http.Client
	log    *slog.Logger
	m      *metrics
}

type node struct {
	url   string
	self  bool
	live  atomic.Bool
	fails int // consecutive failed checks; Run's only
}

// New checks opts and returns the cluster; it does not contact the peers,
// which count as live until a check fails.
func New(opts Options) (*Cluster, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Secret == "" {
		return nil, errors.New("cluster: no secret")
	}
	self, err := nodeURL(opts.Self)
	if err != nil {
		return nil, fmt.Errorf("cluster advertise: %w", err)
	}
	c := &Cluster{self: self, secret: opts.Secret, opts: opts, log: opts.Logger}
	seen := map[string]bool{}
	for _, raw := range append([]string{opts.Self}, opts.Peers...) {
		u, err := nodeURL(raw)
		if err != nil {
			return nil, fmt.Errorf("cluster peer: %w", err)
		}
		if seen[u] {
			continue
		}
		seen[u] = true
		n := &node{url: u, self: u == self}
		n.live.Store(true)
		c.nodes = append(c.nodes, n)
	}
	slices.SortFunc(c.nodes, func(a, b *node) int { return strings.Compare(a.url, b.url) })
	tr := opts.Transport
	if tr == nil {
		// A peer that does not answer is fetched around (the caller
		// fetches the file itself): no long waits for a connection.
		tr = &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: time.Minute, // the owner's own fetch may take a while to start
		}
	}
	// No overall timeout: a peer's body is a file that may be large and
	// still growing upstream; the caller's context bounds it.
	c.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c.m = newMetrics(opts.Registerer, c)
	return c, nil
}

// nodeURL is a node's URL in one spelling: http(s)://host[:port], no path.
func nodeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q: want http(s)://host[:port], nothing more", raw)
	}
	// One spelling, so that every node hashes over the same names.
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// Owner is the node that owns key among the live ones: the highest
// rendezvous score of node and key. self reports whether it is this node.
// With every other node down, this node owns everything.
func (c *Cluster) Owner(key string) (owner string, self bool) {
	var best *node
	var bestScore uint64
	for _, n := range c.nodes {
		if !n.self && !n.live.Load() {
			continue
		}
		if s := score(n.url, key); best == nil || s > bestScore {
			best, bestScore = n, s
		}
	}
	return best.url, best.self
}

// score is the rendezvous weight of key on node: FNV-1a over both, then
// a 64-bit finaliser (splitmix64's) so that similar keys spread.
func score(node, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Live is the URLs of the nodes this node counts as live, itself included.
func (c *Cluster) Live() []string {
	var live []string
	for _, n := range c.nodes {
		if n.self || n.live.Load() {
			live = append(live, n.url)
		}
	}
	return live
}

// Run checks the peers every Interval until ctx ends.
func (c *Cluster) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		var wg stdsync.WaitGroup
		for _, n := range c.nodes {
			if !n.self {
				wg.Go(func() { c.check(ctx, n) })
			}
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// check asks n's /readyz, which a node answers 503 while it shuts down.
func (c *Cluster) check(parent context.Context, n *node) {
	ctx, cancel := context.WithTimeout(parent, c.opts.CheckTimeout)
	defer cancel()
	ok := false
	if req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/readyz", nil); err == nil {
		if resp, err := c.client.Do(req); err == nil {
			resp.Body.Close()
			ok = resp.StatusCode == http.StatusOK
		}
	}
	if parent.Err() != nil {
		return // our shutdown, not the peer's failure
	}
	switch {
	case ok:
		n.fails = 0
		if !n.live.Swap(true) {
			c.log.Info("peer back", "peer", n.url)
		}
	default:
		n.fails++
		if n.fails >= 2 && n.live.Swap(false) {
			c.log.Warn("peer down: its files move to the next node", "peer", n.url)
		}
	}
}

// Fetch gets key from owner over the peer route. A 404 marked
// NotFoundUpstream is upstream.ErrNotFound (the owner asked upstream);
// any other failure is an error, and the caller fetches the file itself.
func (c *Cluster) Fetch(ctx context.Context, owner, key string) (*upstream.Response, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, owner+PeerPath+key, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.secret)
	resp, err := c.client.Do(req)
	if err != nil {
		c.m.fetch("error", start)
		return nil, fmt.Errorf("peer %s: %w", owner, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		resp.Body.Close()
		if resp.Header.Get(NotFoundUpstream) == "" {
			c.m.fetch("error", start)
			return nil, fmt.Errorf("peer %s: %s: 404, not from upstream (does it serve this repo?)", owner, key)
		}
		c.m.fetch("not_found", start)
		return nil, fmt.Errorf("peer %s: %s: %w", owner, key, upstream.ErrNotFound)
	default:
		resp.Body.Close()
		c.m.fetch("error", start)
		return nil, fmt.Errorf("peer %s: %s: %s", owner, key, resp.Status)
	}
	c.m.fetch("ok", start)
	out := &upstream.Response{Status: 200, Size: resp.ContentLength, ETag: resp.Header.Get("ETag"), Mirror: "peer " + owner,
		ContentType: resp.Header.Get("Content-Type"), Body: &lengthChecked{r: resp, want: resp.ContentLength}}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		out.LastModified = lm
	}
	return out, nil
}

// lengthChecked is a peer's body that must end at its Content-Length: a
// peer that dies mid-body is an error, never an early io.EOF.
type lengthChecked struct {
	r    *http.Response
	want int64 // -1: unknown
	n    int64
}

func (l *lengthChecked) Read(p []byte) (int, error) {
	n, err := l.r.Body.Read(p)
	l.n += int64(n)
	if err != nil && err == io.EOF && l.want >= 0 && l.n != l.want {
		return n, fmt.Errorf("peer body ended after %d bytes, want %d", l.n, l.want)
	}
	return n, err
}

func (l *lengthChecked) Close() error { return l.r.Body.Close() }

// Handler is the peer route in front of tree: a request to PeerPath+path
// with the cluster's secret is served as tree serves path, marked so that
// it is never sent on to another node; without the secret, 401.
func (c *Cluster) Handler(tree http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(auth), []byte(c.secret)) != 1 {
			c.m.served.WithLabelValues("unauthorized").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="mirrord peers"`)
			http.Error(w, "peer route: no or wrong cluster secret", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		key := strings.TrimPrefix(r.URL.Path, PeerPath)
		if store.CleanPath(key) != nil {
			// proxy.Guard refuses such paths before any handler; this
			// route does not lean on it.
			http.Error(w, "peer route: bad path", http.StatusBadRequest)
			return
		}
		if _, self := c.Owner(key); !self {
			// The asker and this node disagree on who is live (one of
			// them is about to learn it): were this node to ask the owner
			// it sees, two nodes could wait on each other. The asker
			// fetches the file itself.
			c.m.served.WithLabelValues("not_owner").Inc()
			http.Error(w, "peer route: this node does not own "+key, http.StatusMisdirectedRequest)
			return
		}
		c.m.served.WithLabelValues("ok").Inc()
		r2 := r.Clone(context.WithValue(r.Context(), fromPeerKey{}, true))
		r2.URL.Path = "/" + key
		r2.URL.RawPath = ""
		tree.ServeHTTP(w, r2)
	})
}

type fromPeerKey struct{}

// FromPeer reports whether ctx is of a request that came over the peer
// route: it is served by this node, never sent on.
func FromPeer(ctx context.Context) bool {
	v, _ := ctx.Value(fromPeerKey{}).(bool)
	return v
}

// String is for logs: this node and how many nodes are live.
func (c *Cluster) String() string {
	return c.self + " (" + strconv.Itoa(len(c.Live())) + " of " + strconv.Itoa(len(c.nodes)) + " nodes live)"
}
