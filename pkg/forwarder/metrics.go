package forwarder

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	observed      *prometheus.CounterVec
	sent          prometheus.Counter
	failures      *prometheus.CounterVec
	coalesced     prometheus.Counter
	lastSuccess   prometheus.Gauge
	watchRestarts *prometheus.CounterVec

	tombstonesDropped *prometheus.CounterVec
	tombstoneErrors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, depth, tombstones func() int) (*metrics, error) {
	m := &metrics{
		observed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "events_observed_total",
			Help: "Changes seen by the informers, by kind and type."}, []string{"kind", "type"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "events_sent_total",
			Help: "Events the endpoint accepted."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "send_failures_total",
			Help: "Events not delivered, by reason (rejected: a non-retryable 4xx; encode; shutdown)."}, []string{"reason"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "events_coalesced_total",
			Help: "Unsent object states replaced by a newer state of the same object."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "last_success_timestamp_seconds",
			Help: "Unix time of the last accepted event."}),
		watchRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "watch_restarts_total",
			Help: "Watch errors that made an informer re-list or re-watch, by kind."}, []string{"kind"}),
		tombstonesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "tombstones_dropped_total",
			Help: "Pending deletions no longer kept across restarts because the tombstone list was full, by reason (limit: count, size: bytes)."}, []string{"reason"}),
		tombstoneErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "tombstone_errors_total",
			Help: "Failed reads, writes and decodes of the tombstone ConfigMap, by operation."}, []string{"op"}),
	}
	for _, r := range []string{"limit", "size"} {
		m.tombstonesDropped.WithLabelValues(r)
	}
	tombGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "tombstones",
		Help: "Deletions not yet acknowledged by the receiver, kept in the tombstone ConfigMap."}, func() float64 { return float64(tombstones()) })
	depthGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "queue_depth",
		Help: "Objects with a state not yet delivered."}, func() float64 { return float64(depth()) })
	for _, c := range []prometheus.Collector{m.observed, m.sent, m.failures, m.coalesced, m.lastSuccess, m.watchRestarts, depthGauge,
		m.tombstonesDropped, m.tombstoneErrors, tombGauge} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register forwarder metrics: %w", err)
		}
	}
	return m, nil
}
