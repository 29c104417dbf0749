package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
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
	resultNotFound    = "not_found"
	resultError       = "error"
)

var results = []string{resultHit, resultMiss, resultCoalesced, resultRevalidated, resultStale, resultNotFound, resultError}

type metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	repos    map[repoKey]*repoCounters // read-only after newMetrics: no lock, no allocation per request
}

type repoKey struct{ distro, repo string }

type repoCounters struct {
	results map[string]prometheus.Counter
	bytes   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, cfg *config.Config, flights *lockfree.Group) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_requests_total",
			Help: "Requests for files of the tree, by repo and result (hit, miss, coalesced, revalidated, stale, not_found, error).",
		}, []string{"repo", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_served_bytes_total",
			Help: "Body bytes sent to clients, by repo.",
		}, []string{"repo"}),
		repos: map[repoKey]*repoCounters{},
	}
	reg.MustRegister(m.requests, m.bytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mirrord_inflight_fetches",
			Help: "Upstream fetches in progress (one per file, however many clients wait for it).",
		}, func() float64 { return float64(flights.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mirrord_inflight_readers",
			Help: "Clients streaming a file that is still being fetched.",
		}, func() float64 {
			n := 0
			flights.Range(func(_ string, f *lockfree.Flight) bool { n += f.Readers(); return true })
			return float64(n)
		}),
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

func (m *metrics) request(t catalog.Target, result string) {
	if rc := m.repos[repoKey{t.Distro, t.Repo}]; rc != nil {
		rc.results[result].Inc()
	}
}

func (m *metrics) served(t catalog.Target, n int64) {
	if rc := m.repos[repoKey{t.Distro, t.Repo}]; rc != nil {
		rc.bytes.Add(float64(n))
	}
}
