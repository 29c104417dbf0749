package store

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	evictions prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Store) *metrics {
	m := &metrics{
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mirrord_cache_evictions_total",
			Help: "Files removed from the tree by cache eviction.",
		}),
	}
	reg.MustRegister(m.evictions,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mirrord_cache_size_bytes",
			Help: "Total size of the files in the tree.",
		}, func() float64 { return float64(s.size.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mirrord_cache_files",
			Help: "Number of files in the tree.",
		}, func() float64 { return float64(s.files.Load()) }),
	)
	return m
}
