package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/lockfree"
)

// Request results, the label values of mirrord_requests_total.
const (
	resultHit         = "hit"         // served from the tree
	resultMiss        = "miss"        // fetched from upstream by this request
	resultCoalesced   = "coalesced"   // joined a fetch already in flight
	resultRevalidated = "revalidated" // mutable file checked upstream (304 or new copy)
	resultStale       = "stale"       // upstream failed, the old copy was served
	resultRedirected  = "redirected"  // answered with a redirect to the shared storage
	resultNotFound    = "not_found"
	resultError       = "error"
)

var results = []string{resultHit, resultMiss, resultCoalesced, resultRevalidated, resultStale, resultRedirected, resultNotFound, resultError}

// Metrics are the tree handler's counters (mirrord_requests_total,
// mirrord_served_bytes_total, the in-flight gauges). main makes them
// before the handler, so that their reader (the web UI's traffic card)
// can be built first.
type Metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	repos    map[repoKey]*repoCounters // read-only after newMetrics: no lock, no allocation per request
	flights  *lockfree.Group           // for mirrord_inflight_readers
}

type repoKey struct{ distro, repo string }

type repoCounters struct {
	results map[string]prometheus.Counter
	bytes   prometheus.Counter
}

// NewMetrics registers the counters of cat's repos on reg, with the
// in-flight gauges over flights (the fetcher's).
func NewMetrics(reg prometheus.Registerer, cat *catalog.Catalog, flights *lockfree.Group) *Metrics {
	cfg := cat.Config()
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_requests_total",
			Help: "Requests for files of the tree, by repo and result (hit, miss, coalesced, revalidated, stale, not_found, error).",
		}, []string{"repo", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_served_bytes_total",
			Help: "Body bytes sent to clients, by repo.",
		}, []string{"repo"}),
		repos:   map[repoKey]*repoCounters{},
		flights: flights,
	}
	reg.MustRegister(m.requests, m.bytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mirrord_inflight_fetches",
			Help: "Upstream fetches in progress (one per file, however many clients wait for it).",
		}, func() float64 { return float64(flights.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mirrord_inflight_readers",
			Help: "Clients streaming a file that is still being fetched.",
		}, func() float64 { return float64(m.readers()) }),
	)
	for dn, d := range cfg.Distros {
		names := []string{""} // the distro's base files
		for rn := range d.Repos {
			names = append(names, rn)
		}
		for _, rn := range names {
			label := dn + "/" + rn
			rc := &repoCounters{results: map[string]prometheus.Counter{}, bytes: m.bytes.WithLabelValues(label)}
			for _, r := range results {
				rc.results[r] = m.requests.WithLabelValues(label, r)
			}
			m.repos[repoKey{dn, rn}] = rc
		}
	}
	return m
}

func (m *Metrics) request(t catalog.Target, result string) {
	if rc := m.repos[repoKey{t.Distro, t.Repo}]; rc != nil {
		rc.results[result].Inc()
	}
}

func (m *Metrics) served(t catalog.Target, n int64) {
	if rc := m.repos[repoKey{t.Distro, t.Repo}]; rc != nil {
		rc.bytes.Add(float64(n))
	}
}

func (m *Metrics) readers() int64 {
	var n int64
	m.flights.Range(func(_ string, f *lockfree.Flight) bool { n += int64(f.Readers()); return true })
	return n
}

// Counts is what mirrord_requests_total, mirrord_served_bytes_total and
// mirrord_inflight_readers say now, summed over repos: the values for a
// consumer that shows them (the web UI's traffic card, through
// cmd/mirrord), so that nobody reads the registry back by metric name.
type Counts struct {
	Hits      int64 // requests answered from the tree without asking upstream
	Coalesced int64 // requests that joined a fetch already in flight
	// Answered is the requests answered with a file or an error: every
	// result but not_found, so the requests a hit ratio is over.
	Answered        int64
	ServedBytes     int64 // body bytes sent to clients
	InflightReaders int64 // clients streaming a file still being fetched
}

// Counts reads the counters of every repo. The values are integers, which
// a Prometheus counter adds exactly, so the sums are exact too.
func (m *Metrics) Counts() Counts {
	c := Counts{InflightReaders: m.readers()}
	for _, rc := range m.repos {
		for result, ctr := range rc.results {
			n := counterValue(ctr)
			switch result {
			case resultNotFound:
				continue
			case resultHit:
				c.Hits += n
			case resultCoalesced:
				c.Coalesced += n
			}
			c.Answered += n
		}
		c.ServedBytes += counterValue(rc.bytes)
	}
	return c
}

// counterValue reads a counter this package holds, so the request path
// counts once, in the counter, and pays nothing for Counts.
func counterValue(c prometheus.Counter) int64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	return int64(d.GetCounter().GetValue())
}
