package inbox

// The inbox's Prometheus metrics: the metrics struct and initMetrics, which
// creates and registers them at Open (initDamageMetrics, for what Open found
// damaged).

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	depth     prometheus.GaugeFunc
	commits   prometheus.Counter
	batchSize prometheus.Histogram
	dropped   *prometheus.CounterVec
	compacted prometheus.Counter
	applyFail prometheus.Counter
	stalledG  prometheus.GaugeFunc
	quarantG  prometheus.Gauge
	lostG     prometheus.Gauge
}

func (in *Inbox) initMetrics(reg prometheus.Registerer) {
	in.m.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "receiver_inbox_depth", Help: "Events accepted and not yet finished.",
	}, func() float64 { return float64(in.pending.Load()) })
	in.m.commits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "receiver_inbox_commits_total", Help: "Inbox transactions committed (each one fsync).",
	})
	in.m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "receiver_inbox_batch_size", Help: "Operations per inbox transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 6),
	})
	in.m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "receiver_inbox_dropped_total", Help: "Acknowledged events that were not stored, by reason.",
	}, []string{"reason"})
	in.m.compacted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "receiver_inbox_compacted_total", Help: "Finished entries removed by compaction.",
	})
	in.m.applyFail = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "receiver_inbox_apply_failures_total", Help: "Failed attempts to write acknowledged events to the store (retried in order).",
	})
	in.m.stalledG = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "receiver_inbox_unavailable", Help: "1 while the inbox refuses new events (store not writable).",
	}, func() float64 {
		if in.Health() != nil {
			return 1
		}
		return 0
	})
	in.initDamageMetrics()
	if reg != nil {
		reg.MustRegister(in.m.depth, in.m.commits, in.m.batchSize, in.m.dropped, in.m.compacted, in.m.applyFail, in.m.stalledG,
			in.m.quarantG, in.m.lostG)
	}
}

// initDamageMetrics creates the gauges of what Open found damaged.
func (in *Inbox) initDamageMetrics() {
	in.m.quarantG = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "receiver_inbox_quarantined_entries",
		Help: "Stored entries found corrupt at start-up and moved to the quarantine bucket, where they are kept.",
	})
	in.m.quarantG.Set(float64(in.quarantined))
	in.m.lostG = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "receiver_inbox_lost_events",
		Help: "Acknowledged events found at start-up in neither the store nor the write-ahead log (damaged state files; the log names their sequences).",
	})
	in.m.lostG.Set(float64(in.lostAtOpen))
}
