package s3obj

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/internal/store"
)

// metrics time each request to the store, up to its answer's head (a
// Get's body streams afterwards, at the pace of its reader).
type metrics struct {
	seconds  *prometheus.HistogramVec
	requests *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mirrord_storage_request_seconds",
			Help:    "Time to the answer of a request to the S3 storage, by operation (a get's body streams afterwards).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"op"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_storage_requests_total",
			Help: "Requests to the S3 storage by operation and result (ok, not_found, exists, error).",
		}, []string{"op", "result"}),
	}
	for _, op := range []string{"get", "stat", "put", "list", "delete", "copy", "presign"} {
		m.seconds.WithLabelValues(op)
		for _, r := range []string{"ok", "not_found", "exists", "error"} {
			m.requests.WithLabelValues(op, r)
		}
	}
	if reg != nil {
		reg.MustRegister(m.seconds, m.requests)
	}
	return m
}

// observe records one request of op that started at start and ended in
// *errp: deferred as `defer b.metrics.observe(op, time.Now(), &err)`.
func (m *metrics) observe(op string, start time.Time, errp *error) {
	err := *errp
	m.seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		result = "not_found"
	case errors.Is(err, store.ErrExists):
		result = "exists"
	default:
		result = "error"
	}
	m.requests.WithLabelValues(op, result).Inc()
}
