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
}

func newMetrics(reg prometheus.Registerer, depth func() int) (*metrics, error) {
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
	}
	depthGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "queue_depth",
		Help: "Objects with a state not yet delivered."}, func() float64 { return float64(depth()) })
	for _, c := range []prometheus.Collector{m.observed, m.sent, m.failures, m.coalesced, m.lastSuccess, m.watchRestarts, depthGauge} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register forwarder metrics: %w", err)
		}
	}
	return m, nil
}
