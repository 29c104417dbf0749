package cluster

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	fetches *prometheus.HistogramVec
	served  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, c *Cluster) *metrics {
	m := &metrics{
		fetches: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mirrord_peer_fetch_seconds",
			Help:    "Time to the answer of a fetch from the owning node, by result (ok, not_found, error).",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30},
		}, []string{"result"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_peer_requests_total",
			Help: "Requests on the peer route, by result (ok, not_owner, unauthorized).",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "not_found", "error"} {
		m.fetches.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "not_owner", "unauthorized"} {
		m.served.WithLabelValues(r)
	}
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mirrord_peers_live",
		Help: "Nodes of the cluster this node counts as live, itself included.",
	}, func() float64 { return float64(len(c.Live())) })
	if reg != nil {
		reg.MustRegister(m.fetches, m.served, live)
	}
	return m
}

func (m *metrics) fetch(result string, start time.Time) {
	m.fetches.WithLabelValues(result).Observe(time.Since(start).Seconds())
}
