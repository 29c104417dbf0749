package store

import "github.com/prometheus/client_golang/prometheus"

// registerMetrics registers the gauges of the tree's size on reg.
func registerMetrics(reg prometheus.Registerer, s *Store) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mirrord_cache_size_bytes",
			Help: "Total size of the files in the tree.",
		}, func() float64 { return float64(s.size.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mirrord_cache_files",
			Help: "Number of files in the tree.",
		}, func() float64 { return float64(s.files.Load()) }),
	)
}
