package exportwatch

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events    prometheus.Counter
	sent      prometheus.Counter
	overflows prometheus.Counter
	watches   prometheus.Gauge
	pending   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ocpdr", Subsystem: "exportwatch", Name: "fs_events_total",
			Help: "File-system events seen below the export root.",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ocpdr", Subsystem: "exportwatch", Name: "directory_changes_total",
			Help: "Debounced PV-directory changes reported.",
		}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ocpdr", Subsystem: "exportwatch", Name: "queue_overflows_total",
			Help: "inotify queue overflows, each answered by a rescan of the whole root.",
		}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ocpdr", Subsystem: "exportwatch", Name: "watches",
			Help: "inotify watches held (bounded by fs.inotify.max_user_watches).",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ocpdr", Subsystem: "exportwatch", Name: "pending_directories",
			Help: "PV directories changed but not yet reported (debouncing).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.sent, m.overflows, m.watches, m.pending} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register exportwatch metrics: %w", err)
		}
	}
	return m, nil
}
