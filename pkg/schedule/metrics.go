package schedule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// results are the outcomes a schedule's run counter starts at zero for.
var results = []string{"successful", "failed", "error", "canceled", StatusSkipped}

type metrics struct {
	runs     *prometheus.CounterVec
	missed   *prometheus.CounterVec
	next     *prometheus.GaugeVec
	duration *prometheus.HistogramVec
}

// newMetrics registers the scheduler's metrics (receiver_schedule_*; the
// receiver's registerer adds ocpdr_). The schedule label is bounded by the
// configuration.
func newMetrics(reg prometheus.Registerer, slots []*slot) (metrics, error) {
	m := metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "receiver_schedule_runs_total",
			Help: "Scheduled runs by schedule and result (successful, failed, error, canceled, skipped)."}, []string{"schedule", "result"}),
		missed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "receiver_schedule_missed_total",
			Help: "Due times that passed without their own run (receiver down or late); each batch made one run."}, []string{"schedule"}),
		next: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "receiver_schedule_next_run_timestamp_seconds",
			Help: "When the schedule is next due (Unix time; 0 when never)."}, []string{"schedule"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "receiver_schedule_run_duration_seconds",
			Help: "Duration of scheduled runs.", Buckets: prometheus.ExponentialBuckets(1, 2, 15)}, []string{"schedule"}),
	}
	for _, sl := range slots {
		for _, r := range results {
			m.runs.WithLabelValues(sl.Name, r)
		}
		m.missed.WithLabelValues(sl.Name)
		m.next.WithLabelValues(sl.Name)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.runs, m.missed, m.next, m.duration} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}

func (m metrics) setNext(sl *slot) {
	v := 0.0
	if !sl.next.IsZero() {
		v = float64(sl.next.UnixNano()) / 1e9
	}
	m.next.WithLabelValues(sl.Name).Set(v)
}
