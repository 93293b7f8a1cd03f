// Benchmarks of the dispatcher with a stub engine and executor.

package dispatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/pkg/aap"
	"github.com/ocpv-dr/ocpv-dr/pkg/aap/aaptest"
	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

type syncEngine struct{}

func (syncEngine) Process(ev map[string]any) ([]dispatch.Fired, error) {
	return []dispatch.Fired{{Ruleset: "rs", Rule: "sync", Action: "run_job_template",
		Args: map[string]any{"name": "EDA - Sync NFS PV to DR", "organization": "Default"}, MatchingEvents: map[string]any{"m": ev}}}, nil
}
func (syncEngine) PostEvent(string, map[string]any) ([]dispatch.Fired, error) { return nil, nil }
func (syncEngine) SetFact(string, map[string]any) ([]dispatch.Fired, error)   { return nil, nil }

// BenchmarkCoalescing: 1,000 MODIFIED events over 10 PVs within 1 s, each
// launching a 2 s job on a fake Controller. The metric is jobs per PV. The
// one-job-per-event baseline (coalescing off) launches one job per event by
// construction; its jobs take 20 ms so that it finishes in seconds.
func BenchmarkCoalescing(b *testing.B) {
	for _, v := range []struct {
		name     string
		off      bool
		duration time.Duration
	}{{"coalesced", false, 2 * time.Second}, {"one-job-per-event", true, 20 * time.Millisecond}} {
		b.Run(v.name, func(b *testing.B) {
			var perPV float64
			for range b.N {
				perPV = coalesceRun(b, v.off, v.duration)
			}
			b.ReportMetric(perPV, "jobs/PV")
		})
	}
}

func coalesceRun(b *testing.B, off bool, d time.Duration) float64 {
	const events, pvs = 1000, 10
	fake := aaptest.New("tok")
	defer fake.Close()
	fake.AddTemplate(aaptest.Template{Name: "EDA - Sync NFS PV to DR", AskVariablesOnLaunch: true, Duration: d})
	c, err := aap.New(aap.Config{URL: fake.URL, Token: "tok", PollInterval: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	in, err := inbox.Open(inbox.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	disp, err := dispatch.New(dispatch.Config{Engine: syncEngine{}, Store: in, Templates: c, MaxConcurrentJobs: 10, DisableCoalescing: off})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = disp.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	for i := range events {
		pv := i % pvs
		body := fmt.Appendf(nil, `{"id":"e%d","type":"MODIFIED","kind":"PersistentVolume","cluster":"primary","resource":{"kind":"PersistentVolume","metadata":{"name":"pv%d","resourceVersion":"%d"},"spec":{"nfs":{"server":"10.0.0.1","path":"/exports/pv%d"}}}}`, i, pv, i, pv)
		if _, err := in.Append(ctx, &inbox.Item{ID: fmt.Sprint("e", i), Payload: body, UUID: fmt.Sprint("u", i), ReceivedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * time.Second / events)))
	}
	deadline := time.Now().Add(10 * time.Minute)
	for in.Depth() > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("%d events still pending", in.Depth())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return float64(len(fake.Jobs())) / pvs
}
