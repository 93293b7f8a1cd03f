// Tests of the report: a partial run keeps the other families' figures
// from the previous results.json, dated, and never mixes runs in a family.
package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPartialRunKeepsEarlierFamilies(t *testing.T) {
	dir := t.TempDir()
	prev := filepath.Join(dir, "previous.json")
	if err := os.WriteFile(prev, []byte(`{"generated": "2026-11-20T10:00:00Z", "results": [
		{"name": "BenchmarkA/base", "metrics": {"ns/op": 10}},
		{"name": "BenchmarkA/new", "metrics": {"ns/op": 5}},
		{"name": "BenchmarkB/base", "metrics": {"ns/op": 99}}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	groups := filepath.Join(dir, "groups.yaml")
	if err := os.WriteFile(groups, []byte(`
- {title: "A", bench: BenchmarkA, baseline: base, metric: ns/op, better: lower}
- {title: "B", bench: BenchmarkB, baseline: base, metric: ns/op, better: lower}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "run.txt")
	if err := os.WriteFile(in, []byte("BenchmarkB/base-2 1 50 ns/op\nBenchmarkB/fast-2 1 25 ns/op\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "BENCHMARKS.md")
	if err := run(groups, md, filepath.Join(dir, "results.json"), prev, []string{in}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(md)
	out := string(b)
	a, bsec, _ := strings.Cut(out, "## B")
	for _, c := range []struct {
		what, in, want string
		present        bool
	}{
		{"A kept from the earlier run, dated", a, "Measured on 2026-11-20", true},
		{"A's figure kept", a, "| `BenchmarkA/new` | 5.00 | 0.5×", true},
		{"B measured now, not dated as earlier", bsec, "Measured on", false},
		{"B's old figure replaced", bsec, "99", false},
		{"B's new ratio from this run", bsec, "| `BenchmarkB/fast` | 25.00 | 0.5×", true},
	} {
		if strings.Contains(c.in, c.want) != c.present {
			t.Errorf("%s: %q present=%v in:\n%s", c.what, c.want, !c.present, c.in)
		}
	}
}
