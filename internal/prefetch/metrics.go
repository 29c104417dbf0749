package prefetch

import "github.com/prometheus/client_golang/prometheus"

// metrics are the prefetch's counters; label repo is "distro/repo".
type metrics struct {
	runs     *prometheus.CounterVec
	files    *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	failures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, repos []string) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_prefetch_runs_total",
			Help: "Prefetch runs (one per proxy repo arch whose database changed).",
		}, []string{"repo"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_prefetch_files_total",
			Help: "Files (packages and signatures) the prefetch brought into the tree.",
		}, []string{"repo"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_prefetch_bytes_total",
			Help: "Bytes of the files the prefetch brought into the tree.",
		}, []string{"repo"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_prefetch_skipped_total",
			Help: "Newer packages a prefetch run left to clients: over cache.prefetch_max_bytes, or of no known size.",
		}, []string{"repo"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_prefetch_failures_total",
			Help: "Prefetch downloads that failed.",
		}, []string{"repo"}),
	}
	for _, r := range repos { // known label values start at zero
		m.runs.WithLabelValues(r)
		m.files.WithLabelValues(r)
		m.bytes.WithLabelValues(r)
		m.skipped.WithLabelValues(r)
		m.failures.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.files, m.bytes, m.skipped, m.failures)
	}
	return m
}
