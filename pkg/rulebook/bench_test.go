// Benchmarks of the engine on the shipped rulebook.

package rulebook

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

func benchEvent(b *testing.B, file string) map[string]any {
	raw, err := os.ReadFile("../../examples/events/" + file)
	if err != nil {
		b.Fatal(err)
	}
	var body any
	if err := json.Unmarshal(raw, &body); err != nil {
		b.Fatal(err)
	}
	return WrapWebhookEvent(body, "/endpoint", map[string]string{"Content-Type": "application/json"}, nowForBench, "u")
}

func shippedSession(b *testing.B) *Session {
	vars, err := LoadVarsFile("../../rulebooks/vars.yml")
	if err != nil {
		b.Fatal(err)
	}
	rb, err := LoadFile("../../rulebooks/ocp_dr_events.yml", vars)
	if err != nil {
		b.Fatal(err)
	}
	return NewSession(rb, Options{})
}

// BenchmarkEvaluate measures rule evaluation per event. The baseline is the
// floor of any evaluator: reading event.payload.kind from the event map.
func BenchmarkEvaluate(b *testing.B) {
	match := benchEvent(b, "pv-added.json")
	noMatch := benchEvent(b, "pv-other-class.json")
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if noMatch["payload"].(map[string]any)["kind"] != "PersistentVolume" {
				b.Fatal("kind")
			}
		}
	})
	b.Run("shipped-match", func(b *testing.B) {
		s := shippedSession(b)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if f, _ := s.Process(match); len(f) != 1 {
				b.Fatal("no match")
			}
		}
	})
	b.Run("shipped-nomatch", func(b *testing.B) {
		s := shippedSession(b)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if f, _ := s.Process(noMatch); len(f) != 0 {
				b.Fatal("match")
			}
		}
	})
	b.Run("100-rules", func(b *testing.B) {
		var sb strings.Builder
		sb.WriteString("- name: many\n  hosts: all\n  sources:\n    - ansible.eda.webhook: {}\n  rules:\n")
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&sb, "    - name: r%d\n      condition: event.payload.kind == \"Kind%d\" and event.payload.resource.spec.capacity.storage == \"%dGi\"\n      action:\n        debug:\n", i, i, i)
		}
		rb, err := Load([]byte(sb.String()), "many.yml", nil)
		if err != nil {
			b.Fatal(err)
		}
		s := NewSession(rb, Options{})
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = s.Process(noMatch)
		}
	})
}

var nowForBench = mustTime("2026-11-24T10:00:00Z")
