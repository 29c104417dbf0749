package lease

import "github.com/prometheus/client_golang/prometheus"

// metrics are the holds of Run, by lease name: a handful per cluster (one
// per mirror repo's sync), so the label stays small.
type metrics struct {
	held     *prometheus.GaugeVec
	acquired *prometheus.CounterVec
	lost     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mirrord_lease_held",
			Help: "1 while this node holds the lease (its work runs here), else 0.",
		}, []string{"lease"}),
		acquired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_lease_acquired_total",
			Help: "Holds of the lease this node began.",
		}, []string{"lease"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_lease_lost_total",
			Help: "Holds of the lease this node lost before its work ended (taken over, or not renewed in time).",
		}, []string{"lease"}),
	}
	if reg != nil {
		reg.MustRegister(m.held, m.acquired, m.lost)
	}
	return m
}
