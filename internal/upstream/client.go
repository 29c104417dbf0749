package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
)

// Options tune the Client. Zero durations take the defaults named on each
// field; Retries is taken as given (0: no retries on the same mirror, the
// other mirrors are the retry).
type Options struct {
	// Retries is how many more times one mirror is asked after a
	// connection error or a 5xx before the next mirror is tried. 4xx and
	// 304 are never retried.
	Retries int
	// RetryWaitMin and RetryWaitMax bound the exponential backoff between
	// retries (default 200ms and 2s); a Retry-After header is capped by
	// RetryWaitMax, so one mirror cannot park a fetch for an hour.
	RetryWaitMin, RetryWaitMax time.Duration
	// ConnectTimeout bounds the TCP connect and the TLS handshake (default 5s).
	ConnectTimeout time.Duration
	// HeaderTimeout bounds the wait for response headers once the request
	// is sent (default 8s).
	HeaderTimeout time.Duration
	// StallTimeout ends a body that delivers no byte for this long while
	// the caller is reading (default 8s). It is a watchdog, not a total
	// timeout: a slow but steady transfer never trips it.
	StallTimeout time.Duration
	// Cooldown is how long a mirror that just failed ranks below the
	// healthy ones (default 30s); it doubles with each further consecutive
	// failure, up to 16 times.
	Cooldown time.Duration
	// MaxConnsPerMirror bounds the requests in flight to one mirror host
	// (host:port), across every MirrorSet that names it (default 16).
	// Further requests wait their turn, as long as their context lasts,
	// before they are sent; mirrord_upstream_waiting_requests counts them.
	MaxConnsPerMirror int
	// UserAgent is sent with every request, e.g. "mirrord/1.2.0" (default
	// "mirrord").
	UserAgent string
	// Logger receives failovers (Warn) and the retry library's chatter
	// (Debug). Nil discards both.
	Logger *slog.Logger
}

func (o *Options) setDefaults() error {
	if o.Retries < 0 {
		return fmt.Errorf("upstream retries %d: must not be negative", o.Retries)
	}
	switch {
	case o.MaxConnsPerMirror < 0:
		return fmt.Errorf("upstream max conns per mirror %d: must not be negative", o.MaxConnsPerMirror)
	case o.MaxConnsPerMirror == 0:
		o.MaxConnsPerMirror = 16
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"retry wait min", &o.RetryWaitMin, 200 * time.Millisecond},
		{"retry wait max", &o.RetryWaitMax, 2 * time.Second},
		{"connect timeout", &o.ConnectTimeout, 5 * time.Second},
		{"header timeout", &o.HeaderTimeout, 8 * time.Second},
		{"stall timeout", &o.StallTimeout, 8 * time.Second},
		{"cooldown", &o.Cooldown, 30 * time.Second},
	} {
		if *d.v < 0 {
			return fmt.Errorf("upstream %s %s: must not be negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.RetryWaitMax < o.RetryWaitMin {
		o.RetryWaitMax = o.RetryWaitMin
	}
	if o.UserAgent == "" {
		o.UserAgent = "mirrord"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Client is the HTTP client for upstream mirrors, shared by every MirrorSet
// so that connections are pooled across distros. It is safe for concurrent
// use.
type Client struct {
	opts      Options
	transport *http.Transport
	retry     *retryablehttp.Client
	metrics   *metrics

	mu sync.Mutex // guards the maps below; taken only by Mirrors, never on a request
	// slots maps a mirror label (host:port) to its request slots (see slotsLocked).
	slots map[string]*slots
	// mirrors maps a template to its one health record (see Client.mirror).
	mirrors map[string]*mirror
}

// NewClient builds a client and registers its metrics on reg (nil: the
// metrics are kept but not registered).
func NewClient(opts Options, reg prometheus.Registerer) (*Client, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 proxyOf,
		ProxyConnectHeader:    http.Header{"User-Agent": {opts.UserAgent}}, // a proxy's CONNECT names us too
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   opts.ConnectTimeout,
		ResponseHeaderTimeout: opts.HeaderTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          100,
		// The slots (limit.go) let at most MaxConnsPerMirror requests to a
		// mirror in flight, observably; the transport's own cap agrees, and
		// binds alone only on a host that several mirrors redirect to, or
		// for a moment while a connection whose body was cut is closed.
		// Keep as many idle as may be busy, so a burst does not redial.
		MaxConnsPerHost:     opts.MaxConnsPerMirror,
		MaxIdleConnsPerHost: opts.MaxConnsPerMirror,
		IdleConnTimeout:     90 * time.Second,
		// Files must arrive byte for byte as the mirror stores them: a
		// transparently gunzipped body would lose its Content-Length and
		// its checksum.
		DisableCompression: true,
	}
	c := &Client{opts: opts, transport: tr, metrics: m, slots: map[string]*slots{}, mirrors: map[string]*mirror{}}
	c.retry = &retryablehttp.Client{
		// countingTransport deliberately lacks CloseIdleConnections:
		// retryablehttp calls it after every exhausted retry, which would
		// drop the pooled connections of every healthy mirror too.
		HTTPClient:   &http.Client{Transport: countingTransport{next: tr, metrics: m}},
		Logger:       leveledLogger{opts.Logger},
		RetryWaitMin: opts.RetryWaitMin,
		RetryWaitMax: opts.RetryWaitMax,
		RetryMax:     opts.Retries,
		CheckRetry:   checkRetry,
		Backoff:      cappedBackoff,
		// The last response of a mirror that keeps answering 5xx comes back
		// as is, so Fetch can name its status.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	return c, nil
}

// Close closes idle connections. In-flight fetches are not affected.
func (c *Client) Close() {
	c.transport.CloseIdleConnections()
}

// checkRetry retries connection errors and 5xx (but 501, which will not
// change), and nothing else: a 4xx or 304 is an answer.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	if err != nil {
		return true, nil
	}
	return resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented, nil
}

func cappedBackoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	return min(retryablehttp.DefaultBackoff(lo, hi, attempt, resp), hi)
}

// leveledLogger adapts slog to retryablehttp. Everything goes to Debug:
// the library calls a single failed attempt an error, but a retry or a
// failover is routine, and Fetch reports what is not.
type leveledLogger struct{ l *slog.Logger }

func (a leveledLogger) Error(msg string, kv ...any) { a.l.Debug(msg, kv...) }
func (a leveledLogger) Warn(msg string, kv ...any)  { a.l.Debug(msg, kv...) }
func (a leveledLogger) Info(msg string, kv ...any)  { a.l.Debug(msg, kv...) }
func (a leveledLogger) Debug(msg string, kv ...any) { a.l.Debug(msg, kv...) }

// attemptKey carries an *attemptInfo in a request's context from Fetch to
// countingTransport.
type attemptKey struct{}

// attemptInfo is written by countingTransport.RoundTrip, which http.Client
// calls synchronously in the goroutine of retryablehttp's Do, and read by
// that goroutine after Do returns: no lock is needed.
type attemptInfo struct {
	mirror string        // the metrics label
	proxy  *url.URL      // the set's proxy, set before the request; nil: the environment's
	last   time.Duration // time to headers of the last attempt
}

// proxyOf is the transport's proxy for r: its set's, from the attempt in
// its context (the same for the redirects it follows), else the
// environment's.
func proxyOf(r *http.Request) (*url.URL, error) {
	if info, _ := r.Context().Value(attemptKey{}).(*attemptInfo); info != nil && info.proxy != nil {
		return info.proxy, nil
	}
	return http.ProxyFromEnvironment(r)
}

// countingTransport times and counts every attempt, retries included, under
// the mirror's label from the context (never the URL's host, which a
// redirect could make anything).
type countingTransport struct {
	next    http.RoundTripper
	metrics *metrics
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	info, _ := r.Context().Value(attemptKey{}).(*attemptInfo)
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	if info == nil {
		return resp, err
	}
	d := time.Since(start)
	info.last = d
	result := resultError
	if err == nil {
		switch resp.StatusCode {
		case http.StatusOK, http.StatusPartialContent:
			result = resultOK
		case http.StatusNotModified:
			result = resultNotModified
		case http.StatusNotFound:
			result = resultNotFound
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			// A hop, not an answer: the request it leads to is counted.
			return resp, err
		}
		t.metrics.duration.WithLabelValues(info.mirror).Observe(d.Seconds())
	} else if errors.Is(err, context.Canceled) {
		// The caller left; the mirror did nothing wrong.
		return resp, err
	}
	t.metrics.requests.WithLabelValues(info.mirror, result).Inc()
	return resp, err
}
