package hosted

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	jobs           *prometheus.CounterVec   // result
	rebuilds       *prometheus.CounterVec   // repo
	rebuildSeconds *prometheus.HistogramVec // repo
	packages       *prometheus.GaugeVec     // repo, arch
}

func newMetrics(reg prometheus.Registerer, s *Service) *metrics {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_publish_jobs_total",
			Help: "Publish jobs finished, by result (done, refused, invalid, error).",
		}, []string{"result"}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_db_rebuilds_total",
			Help: "Database rebuilds of hosted repos (one per arch: .db and .files).",
		}, []string{"repo"}),
		rebuildSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mirrord_db_rebuild_duration_seconds",
			Help:    "Time to write one arch's .db and .files of a hosted repo.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"repo"}),
		packages: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mirrord_hosted_packages",
			Help: "Packages in a hosted repo's index, by arch (an any package counts in every arch).",
		}, []string{"repo", "arch"}),
	}
	for _, r := range results {
		m.jobs.WithLabelValues(r)
	}
	for key, r := range s.repos {
		m.rebuilds.WithLabelValues(key)
		m.rebuildSeconds.WithLabelValues(key)
		for _, a := range r.arches {
			m.packages.WithLabelValues(key, a)
		}
	}
	reg.MustRegister(m.jobs, m.rebuilds, m.rebuildSeconds, m.packages,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mirrord_publish_queue_length",
			Help: "Publish jobs acknowledged and not finished (queued or running).",
		}, func() float64 { return float64(s.pending.Load()) }),
	)
	return m
}
