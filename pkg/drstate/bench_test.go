// Figures: memory of the state with 10,000 volumes, and the time to read
// them worst first.
package drstate

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

func fill(n int) *State {
	s, _ := New(Config{DefaultRPO: 2 * time.Hour})
	now := time.Now()
	for i := range n {
		_ = s.Apply(Job{ID: uint64(i), Status: "successful", Finished: now, Artifacts: map[string]any{ReportKey: map[string]any{
			"volumes": []any{map[string]any{"name": fmt.Sprintf("pvc-%08d-0000-0000-0000-000000000000", i), "status": "synced",
				"namespace": "vms", "pvc": fmt.Sprintf("disk-%d", i), "vms": []any{fmt.Sprintf("vms/vm-%d", i)},
				"point": map[string]any{"time": now.Format(time.RFC3339), "consistency": "crash-consistent"}}}}}})
	}
	return s
}

func BenchmarkState10000Volumes(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := fill(10000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	for b.Loop() {
		if len(s.Views()) != 10000 {
			b.Fatal("views")
		}
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-state")
}
