package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
)

// Load is one run of `get`: Clients goroutines, each with requests in
// sequence over URLs, until Requests are done or Duration has passed.
type Load struct {
	URLs     []string
	Clients  int
	Duration time.Duration // 0: until Requests are done
	Requests int           // total over all clients; 0: until Duration
	Client   *http.Client  // nil: a keep-alive client sized for Clients
}

// Report is what a run measured. Durations are in milliseconds; 1 MB is
// 10^6 bytes.
type Report struct {
	Clients    int     `json:"clients"`
	Requests   int64   `json:"requests"`   // complete: a 2xx and the whole body
	Errors     int64   `json:"errors"`     // a transport error, a non-2xx or a short body
	Incomplete int64   `json:"incomplete"` // cut off by the end of Duration
	Bytes      int64   `json:"bytes"`      // body bytes, those of incomplete requests too
	Seconds    float64 `json:"seconds"`
	ReqPerSec  float64 `json:"req_per_sec"`
	MBPerSec   float64 `json:"mb_per_sec"`
	// TTFB runs from sending the request to the first body byte; it
	// counts incomplete requests that got one. Completion runs to the last
	// body byte of complete requests.
	TTFB       Summary         `json:"ttfb_ms"`
	Completion Summary         `json:"completion_ms"`
	FirstError string          `json:"first_error,omitempty"`
	Start      time.Time       `json:"start"`
	Upstream   *UpstreamReport `json:"upstream,omitempty"`

	lastFirstByte time.Time // the latest first body byte of any request
}

// Summary is the distribution of one duration, in milliseconds.
type Summary struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
}

// UpstreamReport relates the clients' times to what the upstream saw, for
// a run through a caching proxy: how late the last client got its first
// byte after the upstream sent its first, and how the slowest client's
// completion compares with the upstream's transfer time.
type UpstreamReport struct {
	UpstreamStats
	TransferMS         float64 `json:"transfer_ms"`
	FirstByteLagMaxMS  float64 `json:"first_byte_lag_max_ms"`
	CompletionMaxRatio float64 `json:"completion_max_ratio"`
}

func getCmd(args []string) error {
	fs := pflag.NewFlagSet("get", pflag.ContinueOnError)
	urls := fs.StringSlice("url", nil, "URLs to fetch, in rotation (comma-separated or repeated)")
	clients := fs.Int("clients", 1, "concurrent clients, each with one request at a time")
	duration := fs.Duration("duration", 0, "run this long (requests still running then are cut off)")
	requests := fs.Int("requests", 0, "total requests over all clients")
	stats := fs.String("upstream-stats", "", "after the run, read an upstream's /_count and relate its times to the clients'")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l := Load{URLs: *urls, Clients: *clients, Duration: *duration, Requests: *requests}
	if err := l.check(); err != nil {
		return err
	}
	rep, err := l.Run(context.Background())
	if err != nil {
		return err
	}
	if *stats != "" {
		st, err := readUpstreamStats(*stats)
		if err != nil {
			return err
		}
		rep.relate(st)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.WriteTable(os.Stdout)
	return nil
}

func (l *Load) check() error {
	switch {
	case len(l.URLs) == 0:
		return errors.New("get: --url is required")
	case l.Clients < 1:
		return fmt.Errorf("get: --clients %d, want at least 1", l.Clients)
	case l.Duration <= 0 && l.Requests <= 0:
		return errors.New("get: give --duration or --requests")
	}
	return nil
}

// clientStats is one client's tally; only its goroutine writes it.
type clientStats struct {
	requests, errors, incomplete, bytes int64
	ttfb, completion                    []time.Duration
	lastFirstByte                       time.Time
	firstErr                            error
}

// Run performs the load and reports on it. It returns an error only for a
// Load that cannot run; failed requests are counted in the report.
func (l *Load) Run(ctx context.Context) (*Report, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	client := l.Client
	if client == nil {
		client = newHTTPClient(l.Clients)
	}
	if l.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.Duration)
		defer cancel()
	}
	var left atomic.Int64 // requests not yet started, when Requests > 0
	left.Store(int64(l.Requests))
	// The clients take the URLs in turn from one rotation, so that
	// --requests N over N URLs fetches each once whatever --clients is.
	// (Each client going round the list on its own from a start of its
	// own fetched the first N/clients URLs only, and left the rest of a
	// "filled" cache cold.)
	var next atomic.Int64
	stats := make([]clientStats, l.Clients)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range stats {
		wg.Go(func() {
			cs := &stats[i]
			buf := make([]byte, 32<<10)
			for ctx.Err() == nil {
				if l.Requests > 0 && left.Add(-1) < 0 {
					return
				}
				fetch(ctx, client, l.URLs[(next.Add(1)-1)%int64(len(l.URLs))], buf, cs)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	rep := &Report{Clients: l.Clients, Start: start, Seconds: elapsed.Seconds()}
	var ttfb, completion []time.Duration
	for i := range stats {
		cs := &stats[i]
		rep.Requests += cs.requests
		rep.Errors += cs.errors
		rep.Incomplete += cs.incomplete
		rep.Bytes += cs.bytes
		ttfb = append(ttfb, cs.ttfb...)
		completion = append(completion, cs.completion...)
		if cs.lastFirstByte.After(rep.lastFirstByte) {
			rep.lastFirstByte = cs.lastFirstByte
		}
		if cs.firstErr != nil && rep.FirstError == "" {
			rep.FirstError = cs.firstErr.Error()
		}
	}
	rep.ReqPerSec = float64(rep.Requests) / elapsed.Seconds()
	rep.MBPerSec = float64(rep.Bytes) / 1e6 / elapsed.Seconds()
	rep.TTFB = summarize(ttfb)
	rep.Completion = summarize(completion)
	return rep, nil
}

// fetch does one request and adds what it saw to cs.
func fetch(ctx context.Context, client *http.Client, url string, buf []byte, cs *clientStats) {
	fail := func(err error) {
		if ctx.Err() != nil {
			cs.incomplete++ // the run ended, the server did nothing wrong
			return
		}
		cs.errors++
		if cs.firstErr == nil {
			cs.firstErr = err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fail(err)
		return
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		fail(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		io.Copy(io.Discard, resp.Body) // keep the connection reusable
		fail(fmt.Errorf("GET %s: %s", url, resp.Status))
		return
	}
	var first time.Time
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			cs.bytes += int64(n)
			if first.IsZero() {
				first = time.Now()
				cs.ttfb = append(cs.ttfb, first.Sub(t0))
				if first.After(cs.lastFirstByte) {
					cs.lastFirstByte = first
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// Go's client reports a body shorter than its Content-Length
			// as io.ErrUnexpectedEOF, so a cut transfer lands here.
			fail(fmt.Errorf("GET %s: body: %w", url, err))
			return
		}
	}
	end := time.Now()
	if first.IsZero() {
		cs.ttfb = append(cs.ttfb, end.Sub(t0)) // an empty body
	}
	cs.requests++
	cs.completion = append(cs.completion, end.Sub(t0))
}

// newHTTPClient keeps one idle connection per client, so that every
// request after the first reuses one, as wrk does; it never follows
// redirects or asks for compression, so the bytes counted are the file's.
func newHTTPClient(clients int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        clients,
			MaxIdleConnsPerHost: clients,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// summarize returns min, median, p99 and max of ds in milliseconds; it
// sorts ds.
func summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(q * float64(len(ds)-1))
		return float64(ds[i]) / float64(time.Millisecond)
	}
	return Summary{Min: at(0), Median: at(0.5), P99: at(0.99), Max: at(1)}
}

// readUpstreamStats reads an upstream's /_count.
func readUpstreamStats(url string) (UpstreamStats, error) {
	var st UpstreamStats
	resp, err := http.Get(url)
	if err != nil {
		return st, fmt.Errorf("read upstream stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("read upstream stats from %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("read upstream stats from %s: %w", url, err)
	}
	return st, nil
}

// relate adds the upstream's view to the report.
func (r *Report) relate(st UpstreamStats) {
	u := &UpstreamReport{UpstreamStats: st}
	if !st.FirstByte.IsZero() {
		transfer := st.LastByte.Sub(st.FirstByte)
		u.TransferMS = ms(transfer)
		if !r.lastFirstByte.IsZero() {
			u.FirstByteLagMaxMS = ms(r.lastFirstByte.Sub(st.FirstByte))
		}
		if transfer > 0 {
			u.CompletionMaxRatio = r.Completion.Max / u.TransferMS
		}
	}
	r.Upstream = u
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WriteTable prints the report for a person.
func (r *Report) WriteTable(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "clients     %d\n", r.Clients)
	fmt.Fprintf(&b, "requests    %d complete, %d errors, %d incomplete\n", r.Requests, r.Errors, r.Incomplete)
	fmt.Fprintf(&b, "elapsed     %.2f s\n", r.Seconds)
	fmt.Fprintf(&b, "throughput  %.1f req/s, %.1f MB/s\n", r.ReqPerSec, r.MBPerSec)
	fmt.Fprintf(&b, "%-11s %10s %10s %10s %10s\n", "ms", "min", "median", "p99", "max")
	for _, row := range []struct {
		name string
		s    Summary
	}{{"ttfb", r.TTFB}, {"completion", r.Completion}} {
		fmt.Fprintf(&b, "%-11s %10.1f %10.1f %10.1f %10.1f\n", row.name, row.s.Min, row.s.Median, row.s.P99, row.s.Max)
	}
	if u := r.Upstream; u != nil {
		fmt.Fprintf(&b, "upstream    %d requests, %d bytes in %.0f ms; last client first byte %+.1f ms after upstream's; slowest completion %.2fx upstream transfer\n",
			u.Requests, u.Bytes, u.TransferMS, u.FirstByteLagMaxMS, u.CompletionMaxRatio)
	}
	if r.FirstError != "" {
		fmt.Fprintf(&b, "first error %s\n", r.FirstError)
	}
	io.WriteString(w, b.String())
}
