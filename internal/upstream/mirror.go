package upstream

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// ewmaWeight is the weight of a new sample in the moving averages:
	// about the last five transfers count.
	ewmaWeight = 0.3
	// refSize is the transfer size the score prices throughput at, so a
	// fast-to-answer but slow-to-send mirror does not win.
	refSize = 1 << 20
	// minThroughputSample keeps tiny files, whose time is all latency, out
	// of the throughput average.
	minThroughputSample = 64 << 10
	// maxBackoffShift caps the cooldown's doubling at 16 times Cooldown.
	maxBackoffShift = 4
)

// MirrorSet is the ordered mirror list of one distro (or one repo with
// its own upstreams). It never changes once built: a new list is a new
// set (whose mirrors keep their health, see Client.Mirrors). It is safe
// for concurrent use.
type MirrorSet struct {
	c       *Client
	mirrors []*mirror // in configured order, which breaks ties in rank
	// proxy is the HTTP proxy of every request of the set; nil: the
	// environment's (HTTP_PROXY, HTTPS_PROXY, NO_PROXY).
	proxy *url.URL
}

// mirror is one URL template and its measured health.
type mirror struct {
	template string // trailing slash stripped
	base     string // template before the first segment naming $repo or $arch
	label    string // host:port, the metrics label and log value
	slots    *slots // the host's request slots, shared with other sets naming it

	mu sync.Mutex // guards the fields below; held only for arithmetic
	// latency is the EWMA of the time to response headers, in seconds;
	// 0 until the first answer.
	latency float64
	// throughput is the EWMA of body bytes per second; 0 until measured.
	throughput  float64
	failures    int       // consecutive failures, reset by an answer
	lastFailure time.Time // when the last failure happened
	lastErr     string    // the last failure's text
	errors      int64     // failures since start
}

// Mirrors builds the mirror set for a list of URL templates such as
// "https://mirror.example/archlinux/$repo/os/$arch". Every set that names
// a template shares its one health record, whoever asks (the proxy, the
// sync, a set of one mirror): a dead mirror fails once for all of them
// and sits out its cooldown in each.
func (c *Client) Mirrors(templates []string) (*MirrorSet, error) {
	return c.MirrorsVia(nil, templates)
}

// MirrorsVia is Mirrors with every request of the set sent through the
// HTTP proxy at proxy (http, https or socks5); nil is the environment's
// proxy, as http.ProxyFromEnvironment reads it.
func (c *Client) MirrorsVia(proxy *url.URL, templates []string) (*MirrorSet, error) {
	if len(templates) == 0 {
		return nil, fmt.Errorf("mirror list is empty")
	}
	s := &MirrorSet{c: c, proxy: proxy}
	for _, t := range templates {
		m, err := c.mirror(t)
		if err != nil {
			return nil, err
		}
		s.mirrors = append(s.mirrors, m)
	}
	return s, nil
}

// Templates are the set's URL templates, in configured order (trailing
// slashes stripped).
func (s *MirrorSet) Templates() []string {
	out := make([]string, len(s.mirrors))
	for i, m := range s.mirrors {
		out[i] = m.template
	}
	return out
}

// Subset is the set of those of s's mirrors that templates name, in s's
// order and through s's proxy; nil when it names none of them.
func (s *MirrorSet) Subset(templates []string) *MirrorSet {
	sub := &MirrorSet{c: s.c, proxy: s.proxy}
	for _, m := range s.mirrors {
		for _, t := range templates {
			if strings.TrimRight(t, "/") == m.template {
				sub.mirrors = append(sub.mirrors, m)
				break
			}
		}
	}
	if len(sub.mirrors) == 0 {
		return nil
	}
	return sub
}

// mirror returns the one record of template, made on first use.
func (c *Client) mirror(template string) (*mirror, error) {
	m, err := parseMirror(template)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if known, ok := c.mirrors[m.template]; ok {
		return known, nil
	}
	c.metrics.known(m.label)
	m.slots = c.slotsLocked(m.label)
	c.mirrors[m.template] = m
	return m, nil
}

func parseMirror(template string) (*mirror, error) {
	t := strings.TrimRight(template, "/")
	u, err := url.Parse(t)
	if err != nil {
		return nil, fmt.Errorf("mirror %q: %w", template, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mirror %q: want an http or https URL with a host", template)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("mirror %q: a query or fragment cannot take a file name after it", template)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	base := t
	if i := firstVar(t); i >= 0 {
		base = strings.TrimRight(t[:strings.LastIndex(t[:i], "/")], "/")
	}
	return &mirror{template: t, base: base, label: net.JoinHostPort(u.Hostname(), port)}, nil
}

// firstVar is the index of the first $repo or $arch in t, or -1.
func firstVar(t string) int {
	i, j := strings.Index(t, "$repo"), strings.Index(t, "$arch")
	switch {
	case i < 0:
		return j
	case j < 0:
		return i
	}
	return min(i, j)
}

// fileURL expands the template as pacman does ($arch first, then $repo,
// plain substring replacement, trailing slash stripped) and appends "/" and
// the file. With req.Repo empty the file is relative to the mirror's base.
func (m *mirror) fileURL(req *Request) (string, error) {
	dir := m.base
	if req.Repo != "" {
		if req.Arch == "" && strings.Contains(m.template, "$arch") {
			return "", fmt.Errorf("mirror %s needs an arch for repo %s", m.template, req.Repo)
		}
		dir = strings.ReplaceAll(m.template, "$arch", req.Arch)
		dir = strings.TrimRight(strings.ReplaceAll(dir, "$repo", req.Repo), "/")
	}
	segs := strings.Split(req.File, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return dir + "/" + strings.Join(segs, "/"), nil
}

// rank returns the mirrors best first: those out of their cooldown by
// score, then the cooling ones by how long they have been failing. Ties
// keep the configured order. The locks are taken one at a time, for a copy.
func (s *MirrorSet) rank(now time.Time) []*mirror {
	type entry struct {
		m        *mirror
		cooling  bool
		failures int
		score    float64
	}
	es := make([]entry, len(s.mirrors))
	for i, m := range s.mirrors {
		m.mu.Lock()
		es[i] = entry{m, m.coolingLocked(now, s.c.opts.Cooldown), m.failures, m.scoreLocked()}
		m.mu.Unlock()
	}
	slices.SortStableFunc(es, func(a, b entry) int {
		switch {
		case a.cooling != b.cooling:
			if a.cooling {
				return 1
			}
			return -1
		case a.cooling && a.failures != b.failures:
			return a.failures - b.failures
		case a.score < b.score:
			return -1
		case a.score > b.score:
			return 1
		}
		return 0
	})
	out := make([]*mirror, len(es))
	for i, e := range es {
		out[i] = e.m
	}
	return out
}

// scoreLocked estimates the seconds to fetch refSize bytes: latency plus
// transfer time. An unmeasured mirror scores 0, so each mirror is tried
// early on and gets measured.
func (m *mirror) scoreLocked() float64 {
	s := m.latency
	if m.throughput > 0 {
		s += refSize / m.throughput
	}
	return s
}

func (m *mirror) coolingLocked(now time.Time, cooldown time.Duration) bool {
	if m.failures == 0 {
		return false
	}
	return now.Sub(m.lastFailure) < cooldown<<min(m.failures-1, maxBackoffShift)
}

func ewma(old, sample float64) float64 {
	if old == 0 {
		return sample
	}
	return old + ewmaWeight*(sample-old)
}

// answered records a response (any status that is an answer, 404 and 304
// included) that took d to its headers.
func (m *mirror) answered(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.latency = ewma(m.latency, d.Seconds())
	m.failures = 0
}

// transferred records a complete body of n bytes that took d.
func (m *mirror) transferred(n int64, d time.Duration) {
	if n < minThroughputSample || d <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.throughput = ewma(m.throughput, float64(n)/d.Seconds())
}

// failed records a failure: a connection error, a 5xx or other unexpected
// status, a timeout, a broken or wrong body.
func (m *mirror) failed(err error, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failures++
	m.errors++
	m.lastFailure = now
	m.lastErr = err.Error()
}

// MirrorHealth is one mirror's measured state, for the status API.
type MirrorHealth struct {
	URL    string `json:"url"`    // the template
	Mirror string `json:"mirror"` // host:port, as in metrics and logs
	// Score is the estimated seconds to fetch 1 MiB; lower ranks higher.
	Score float64 `json:"score"`
	// LatencySeconds is the moving average time to response headers; 0
	// until measured.
	LatencySeconds float64 `json:"latency_seconds"`
	// ThroughputBytes is the moving average of body bytes per second; 0
	// until a body of 64 KiB or more was measured.
	ThroughputBytes float64 `json:"throughput_bytes_per_second"`
	// Healthy is false while the mirror sits out a cooldown after failing.
	Healthy bool `json:"healthy"`
	// ConsecutiveFailures is reset by the next answer.
	ConsecutiveFailures int       `json:"consecutive_failures"`
	Errors              int64     `json:"errors"`
	LastError           string    `json:"last_error,omitempty"`
	LastFailure         time.Time `json:"last_failure,omitzero"`
}

// Health returns every mirror's state, in the order Fetch would try them now.
func (s *MirrorSet) Health() []MirrorHealth {
	now := time.Now()
	ranked := s.rank(now)
	out := make([]MirrorHealth, len(ranked))
	for i, m := range ranked {
		m.mu.Lock()
		out[i] = MirrorHealth{
			URL:                 m.template,
			Mirror:              m.label,
			Score:               m.scoreLocked(),
			LatencySeconds:      m.latency,
			ThroughputBytes:     m.throughput,
			Healthy:             !m.coolingLocked(now, s.c.opts.Cooldown),
			ConsecutiveFailures: m.failures,
			Errors:              m.errors,
			LastError:           m.lastErr,
			LastFailure:         m.lastFailure,
		}
		m.mu.Unlock()
	}
	return out
}
