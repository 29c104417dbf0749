package api

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec // code
}

// codes are pre-created so that a dashboard sees zeros, not gaps.
var codes = []int{200, 202, 400, 401, 403, 404, 405, 409, 413, 422, 500, 502, 503}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrord_api_requests_total",
		Help: "Requests to /api/v1/, by HTTP status code.",
	}, []string{"code"})}
	for _, c := range codes {
		m.requests.WithLabelValues(strconv.Itoa(c))
	}
	reg.MustRegister(m.requests)
	return m
}

func (m *metrics) request(code int) { m.requests.WithLabelValues(strconv.Itoa(code)).Inc() }
