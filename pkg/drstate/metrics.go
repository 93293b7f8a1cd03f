package drstate

// Bounded metrics of the per-volume state: volumes by state and in breach of
// their objective; never a label per PV.

import "github.com/prometheus/client_golang/prometheus"

type collector struct {
	s        *State
	byState  *prometheus.Desc
	breach   *prometheus.Desc
	ready    *prometheus.Desc
	check    *prometheus.Desc
	checkAge *prometheus.Desc
}

// Register exposes ocpdr_receiver_volumes{state},
// ocpdr_receiver_volumes_rpo_breach and the failover readiness:
// ocpdr_receiver_failover_ready (1: the newest readiness check passed every
// check), ocpdr_receiver_readiness_check{check} (one series per check of
// ReadinessChecks: 1 ok, 0 failed or not reported) and
// ocpdr_receiver_readiness_age_seconds (only once a check reported). reg adds
// the ocpdr_ prefix in the receiver; values are computed at scrape time.
func (s *State) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	return reg.Register(&collector{s: s,
		byState: prometheus.NewDesc("receiver_volumes", "Protected volumes by state (failing, breach, never, ok).", []string{"state"}, nil),
		breach:  prometheus.NewDesc("receiver_volumes_rpo_breach", "Protected volumes whose DR copy is older than their RPO objective.", nil, nil),
		ready: prometheus.NewDesc("receiver_failover_ready",
			"1 when the newest failover readiness check passed every check, else 0 (also when none reported).", nil, nil),
		check: prometheus.NewDesc("receiver_readiness_check",
			"Checks of the newest failover readiness report: 1 ok, 0 failed or not reported.", []string{"check"}, nil),
		checkAge: prometheus.NewDesc("receiver_readiness_age_seconds", "Age of the newest failover readiness report.", nil, nil),
	})
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byState
	ch <- c.breach
	ch <- c.ready
	ch <- c.check
	ch <- c.checkAge
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	byState, breach := c.s.Counts()
	for _, st := range States {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(byState[st]), st)
	}
	ch <- prometheus.MustNewConstMetric(c.breach, prometheus.GaugeValue, float64(breach))
	rd := c.s.Readiness()
	ok := map[string]bool{}
	if rd != nil {
		for _, k := range rd.Checks {
			ok[k.Name] = k.OK
		}
		ch <- prometheus.MustNewConstMetric(c.checkAge, prometheus.GaugeValue, rd.AgeSeconds)
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, b2f(rd != nil && rd.Ready))
	for _, name := range ReadinessChecks {
		ch <- prometheus.MustNewConstMetric(c.check, prometheus.GaugeValue, b2f(ok[name]), name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
