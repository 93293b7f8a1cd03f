// Package monitoring tests deploy/monitoring: the PrometheusRule is valid
// Prometheus rules and its alerts fire (and stay quiet) as documented, under
// promtool's rule unit tests; every metric the rules and the Grafana
// dashboard use is one the code or the playbooks export.
package monitoring

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rulesFile extracts spec.groups of the PrometheusRule into a Prometheus rules file.
func rulesFile(t *testing.T, dir string) {
	t.Helper()
	var pr struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(read(t, "deploy/monitoring/prometheusrule.yaml"), &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Kind != "PrometheusRule" || len(pr.Spec.Groups) == 0 {
		t.Fatalf("deploy/monitoring/prometheusrule.yaml: kind %q with %d groups", pr.Kind, len(pr.Spec.Groups))
	}
	b, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not installed (Debian package prometheus): run make deps")
	}
	return p
}

func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	dir := t.TempDir()
	rulesFile(t, dir)
	if out, err := exec.Command(pt, "check", "rules", filepath.Join(dir, "rules.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), read(t, "test/monitoring/testdata/alerts.yml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pt, "test", "rules", filepath.Join(dir, "alerts.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	// Every alert the issue names is there.
	rules := string(read(t, "deploy/monitoring/prometheusrule.yaml"))
	for _, a := range []string{"OcpdrForwarderCannotDeliver", "OcpdrReceiverBacklogGrowing", "OcpdrJobFailureRate",
		"OcpdrPeriodicSyncNotRun", "OcpdrPeriodicSyncDiscrepancies"} {
		if !strings.Contains(rules, "alert: "+a+"\n") {
			t.Errorf("alert %s missing", a)
		}
	}
}

// exported lists the metric names the project exports: Go collectors with
// Namespace/Subsystem/Name (receiver ones get the ocpdr_ prefix from the
// receiver's registerer) and the periodic sync's textfile metrics.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	full := regexp.MustCompile(`Namespace:\s*"ocpdr",\s*Subsystem:\s*(?:"([a-z_]+)"|subsystem),\s*Name:\s*"([a-z_]+)"`)
	recv := regexp.MustCompile(`Name:\s*"(receiver_[a-z_]+)"`)
	err := filepath.Walk(filepath.Join(root(), "pkg"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range full.FindAllStringSubmatch(string(b), -1) {
			if m[1] == "" {
				// pkg/sender takes its subsystem from the caller: forwarder.
				m[1] = "forwarder"
			}
			names["ocpdr_"+m[1]+"_"+m[2]] = true
		}
		for _, m := range recv.FindAllStringSubmatch(string(b), -1) {
			names["ocpdr_"+m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*(ocpdr_periodic_sync_[a-z_]+)[ {]`).FindAllStringSubmatch(string(read(t, "roles/periodic_storage_sync/tasks/main.yml")), -1) {
		names[m[1]] = true
	}
	return names
}

func TestMetricNamesExist(t *testing.T) {
	names := exported(t)
	for _, want := range []string{"ocpdr_forwarder_queue_depth", "ocpdr_receiver_inbox_depth", "ocpdr_receiver_replication_lag_seconds",
		"ocpdr_exportwatch_queue_overflows_total", "ocpdr_periodic_sync_last_run_timestamp_seconds"} {
		if !names[want] {
			t.Fatalf("metric scan did not find %s (found %d names): the scan is broken", want, len(names))
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(read(t, "deploy/monitoring/grafana-dashboard.json"), &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var pr struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(read(t, "deploy/monitoring/prometheusrule.yaml"), &pr); err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			sources["alert "+r.Alert] += r.Expr + "\n"
		}
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			sources["dashboard panel "+p.Title] += tg.Expr + "\n"
		}
	}
	used := regexp.MustCompile(`ocpdr_[a-z_]+`)
	suffix := regexp.MustCompile(`_(bucket|sum|count)$`)
	for where, text := range sources {
		for _, m := range used.FindAllString(text, -1) {
			if !names[m] && !names[suffix.ReplaceAllString(m, "")] {
				t.Errorf("%s uses %s, which nothing exports", where, m)
			}
		}
	}
}
