package upstream

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one request to a mirror, the values of the result label.
const (
	resultOK          = "ok"
	resultNotModified = "not_modified"
	resultNotFound    = "not_found"
	resultError       = "error"
)

// metrics are the collectors of one Client. Every label value is a mirror's
// host:port or a result constant: never a file name.
type metrics struct {
	requests  *prometheus.CounterVec   // mirror, result: one per HTTP response or transport error
	duration  *prometheus.HistogramVec // mirror: time from request to response headers
	bytes     *prometheus.CounterVec   // mirror: body bytes received, discarded ones included
	failovers *prometheus.CounterVec   // mirror: times a fetch left this mirror for another
	waiting   *prometheus.GaugeVec     // mirror: requests waiting for one of the mirror's slots
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_upstream_requests_total",
			Help: "HTTP requests to upstream mirrors by result (ok, not_modified, not_found, error); retries count one each.",
		}, []string{"mirror", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mirrord_upstream_request_duration_seconds",
			Help:    "Time from sending a request to an upstream mirror to its response headers.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12), // 5ms .. ~10s
		}, []string{"mirror"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_upstream_bytes_total",
			Help: "Body bytes received from upstream mirrors.",
		}, []string{"mirror"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_upstream_failovers_total",
			Help: "Times a fetch left this mirror for the next one, before or during the body.",
		}, []string{"mirror"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mirrord_upstream_waiting_requests",
			Help: "Requests waiting for a connection to an upstream mirror, all upstream.max_conns_per_mirror being in use.",
		}, []string{"mirror"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.bytes, m.failovers, m.waiting} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register upstream metrics: %w", err)
		}
	}
	return m, nil
}

// known creates a mirror's series at zero, so dashboards and rate() see
// them before the first request.
func (m *metrics) known(mirror string) {
	for _, r := range []string{resultOK, resultNotModified, resultNotFound, resultError} {
		m.requests.WithLabelValues(mirror, r)
	}
	m.duration.WithLabelValues(mirror)
	m.bytes.WithLabelValues(mirror)
	m.failovers.WithLabelValues(mirror)
	m.waiting.WithLabelValues(mirror)
}
