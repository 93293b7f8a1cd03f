// Command report turns `go test -bench` output into BENCHMARKS.md and a JSON
// file of raw numbers. Every figure is paired with a baseline measured in the
// same run: a benchmark named "<group>/<variant>" is compared against the
// variant that pairs.yaml names as its group's baseline.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Group describes one benchmark family and how to read it.
type Group struct {
	Title    string  `yaml:"title"`
	Bench    string  `yaml:"bench"`     // benchmark name prefix, e.g. BenchmarkIngest
	Baseline string  `yaml:"baseline"`  // variant that is the baseline, e.g. bare
	Metric   string  `yaml:"metric"`    // unit to compare, e.g. ns/op or events/s
	Better   string  `yaml:"better"`    // "lower" or "higher"
	Target   string  `yaml:"target"`    // the target in words
	Limit    float64 `yaml:"limit"`     // the target as a number in Metric (0: none)
	LimitFor string  `yaml:"limit_for"` // only variants containing this are judged (empty: all)
	Command  string  `yaml:"command"`   // how to reproduce
	Note     string  `yaml:"note"`
}

type result struct {
	Name    string             `json:"name"`
	Metrics map[string]float64 `json:"metrics"`
	// Measured is the day (UTC, YYYY-MM-DD) of the run that measured it.
	Measured string `json:"measured,omitempty"`
}

func main() {
	pairs := flag.String("groups", "test/bench/groups.yaml", "benchmark groups")
	out := flag.String("md", "BENCHMARKS.md", "markdown output")
	js := flag.String("json", "test/bench/results.json", "raw JSON output")
	prev := flag.String("previous", "", "earlier results.json: families this run did not measure are kept from it, with their date")
	flag.Parse()
	if err := run(*pairs, *out, *js, *prev, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(groupsFile, mdFile, jsonFile, previous string, inputs []string) error {
	b, err := os.ReadFile(groupsFile)
	if err != nil {
		return fmt.Errorf("read groups: %w", err)
	}
	var groups []Group
	if err := yaml.Unmarshal(b, &groups); err != nil {
		return fmt.Errorf("parse groups: %w", err)
	}
	var results []result
	for _, in := range inputs {
		rs, err := parseFile(in)
		if err != nil {
			return err
		}
		results = append(results, rs...)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	for i := range results {
		results[i].Measured = today
	}
	if previous != "" {
		kept, err := keepPrevious(previous, groups, results)
		if err != nil {
			return err
		}
		results = append(results, kept...)
	}
	md := render(groups, results)
	if err := os.WriteFile(mdFile, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", mdFile, err)
	}
	raw, _ := json.MarshalIndent(map[string]any{"generated": time.Now().UTC().Format(time.RFC3339), "machine": machine(), "results": results}, "", "  ")
	if err := os.WriteFile(jsonFile, raw, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", jsonFile, err)
	}
	return nil
}

// keepPrevious returns the results of path (an earlier results.json) for
// the families that results has nothing for, each dated by its run.
func keepPrevious(path string, groups []Group, results []result) ([]result, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var old struct {
		Generated string   `json:"generated"`
		Results   []result `json:"results"`
	}
	if err := json.Unmarshal(b, &old); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	measured := func(bench string, rs []result) bool {
		for _, r := range rs {
			if r.Name == bench || strings.HasPrefix(r.Name, bench+"/") {
				return true
			}
		}
		return false
	}
	var out []result
	for _, g := range groups {
		if measured(g.Bench, results) || measured(g.Bench, out) {
			continue
		}
		for _, r := range old.Results {
			if r.Name == g.Bench || strings.HasPrefix(r.Name, g.Bench+"/") {
				if r.Measured == "" && len(old.Generated) >= 10 {
					r.Measured = old.Generated[:10]
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// parseFile reads benchmark lines: "BenchmarkX/y-2  N  123 ns/op  45 B/op ...".
func parseFile(path string) ([]result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	var out []result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			continue
		}
		name := fields[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		r := result{Name: name, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			r.Metrics[fields[i+1]] = v
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

func machine() map[string]any {
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line := strings.SplitN(string(b), "\n", 2)[0]
		mem = strings.TrimSpace(strings.TrimPrefix(line, "MemTotal:"))
	}
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return map[string]any{"cores": runtime.NumCPU(), "memory": mem, "cpu": cpu, "go": runtime.Version(), "os": runtime.GOOS + "/" + runtime.GOARCH}
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func render(groups []Group, results []result) string {
	var b strings.Builder
	m := machine()
	b.WriteString("# Benchmarks\n\nGenerated by `make bench` on ")
	fmt.Fprintf(&b, "%s: %v cores, %v memory, %v, %v. Every figure has its baseline measured in the same run on the same machine; the ratio is figure / baseline. A family measured in an earlier run says so, with the day; its figures and baseline still come from that one run.\n\n", time.Now().UTC().Format("2006-01-02"), m["cores"], m["memory"], m["cpu"], m["go"])
	for _, g := range groups {
		fmt.Fprintf(&b, "## %s\n\n", g.Title)
		var mine []result
		for _, r := range results {
			if r.Name == g.Bench || strings.HasPrefix(r.Name, g.Bench+"/") {
				mine = append(mine, r)
			}
		}
		if len(mine) == 0 {
			fmt.Fprintf(&b, "Not measured in this run (no `%s` results). Target: %s.\n\n", g.Bench, g.Target)
			if g.Note != "" {
				fmt.Fprintf(&b, "%s\n\n", g.Note)
			}
			continue
		}
		sort.SliceStable(mine, func(i, j int) bool { return mine[i].Name < mine[j].Name })
		if d := mine[0].Measured; d != "" && d != time.Now().UTC().Format(time.DateOnly) {
			fmt.Fprintf(&b, "Measured on %s (an earlier run; this run did not measure this family).\n\n", d)
		}
		var base *result
		for i := range mine {
			if strings.HasSuffix(mine[i].Name, "/"+g.Baseline) {
				base = &mine[i]
			}
		}
		b.WriteString("| benchmark | " + g.Metric + " | ratio to baseline | other |\n|---|---|---|---|\n")
		verdicts := []string{}
		for _, r := range mine {
			v, ok := r.Metrics[g.Metric]
			ratio := "—"
			if ok && base != nil && base.Metrics[g.Metric] != 0 && &r != base {
				ratio = fmtNum(v/base.Metrics[g.Metric]) + "×"
			}
			if base != nil && r.Name == base.Name {
				ratio = "baseline"
			}
			var other []string
			keys := make([]string, 0, len(r.Metrics))
			for k := range r.Metrics {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if k != g.Metric {
					other = append(other, fmtNum(r.Metrics[k])+" "+k)
				}
			}
			val := "—"
			if ok {
				val = fmtNum(v)
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.Name, val, ratio, strings.Join(other, ", "))
			if g.Limit != 0 && ok && (base == nil || r.Name != base.Name) && strings.Contains(r.Name, g.LimitFor) {
				met := (g.Better == "lower" && v <= g.Limit) || (g.Better == "higher" && v >= g.Limit)
				word := "meets"
				if !met {
					word = "MISSES"
				}
				verdicts = append(verdicts, fmt.Sprintf("`%s` %s the target (%s %s).", r.Name, word, fmtNum(v), g.Metric))
			}
		}
		fmt.Fprintf(&b, "\nTarget: %s. %s\n\n", g.Target, strings.Join(verdicts, " "))
		if g.Note != "" {
			fmt.Fprintf(&b, "%s\n\n", g.Note)
		}
		fmt.Fprintf(&b, "Reproduce: `%s`\n\n", g.Command)
	}
	return b.String()
}
