package drstate

// Bounded metrics of the per-volume state: volumes by state and in breach of
// their objective; never a label per PV.

import "github.com/prometheus/client_golang/prometheus"

type collector struct {
	s       *State
	byState *prometheus.Desc
	breach  *prometheus.Desc
}

// Register exposes ocpdr_receiver_volumes{state} and
// ocpdr_receiver_volumes_rpo_breach (reg adds the ocpdr_ prefix in the
// receiver) computed at scrape time.
func (s *State) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	return reg.Register(&collector{s: s,
		byState: prometheus.NewDesc("receiver_volumes", "Protected volumes by state (failing, breach, never, ok).", []string{"state"}, nil),
		breach:  prometheus.NewDesc("receiver_volumes_rpo_breach", "Protected volumes whose DR copy is older than their RPO objective.", nil, nil),
	})
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.byState; ch <- c.breach }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	byState, breach := c.s.Counts()
	for _, st := range States {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(byState[st]), st)
	}
	ch <- prometheus.MustNewConstMetric(c.breach, prometheus.GaugeValue, float64(breach))
}
