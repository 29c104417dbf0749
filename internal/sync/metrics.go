package sync

import "github.com/prometheus/client_golang/prometheus"

// metrics are the per-repo sync collectors; label repo is "distro/repo".
type metrics struct {
	lastSuccess *prometheus.GaugeVec
	duration    *prometheus.GaugeVec
	files       *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	failures    *prometheus.CounterVec
	pruned      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, repos []string) *metrics {
	m := &metrics{
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mirrord_sync_last_success_timestamp_seconds",
			Help: "Unix time of the last sync of a mirror repo that completed (0: never).",
		}, []string{"repo"}),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mirrord_sync_duration_seconds",
			Help: "Wall time of the last sync attempt of a mirror repo.",
		}, []string{"repo"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_sync_files_total",
			Help: "Files (packages and signatures) a sync brought into the tree.",
		}, []string{"repo"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_sync_bytes_total",
			Help: "Bytes of the files a sync brought into the tree.",
		}, []string{"repo"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_sync_failures_total",
			Help: "Sync attempts of a mirror repo that did not complete.",
		}, []string{"repo"}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_sync_pruned_files_total",
			Help: "Files deleted because no database named them for sync.prune_after.",
		}, []string{"repo"}),
	}
	for _, r := range repos { // known label values start at zero
		m.lastSuccess.WithLabelValues(r)
		m.duration.WithLabelValues(r)
		m.files.WithLabelValues(r)
		m.bytes.WithLabelValues(r)
		m.failures.WithLabelValues(r)
		m.pruned.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.lastSuccess, m.duration, m.files, m.bytes, m.failures, m.pruned)
	}
	return m
}
