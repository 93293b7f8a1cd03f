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
		"OcpdrPeriodicSyncNotRun", "OcpdrPeriodicSyncDiscrepancies", "OcpdrFreezeBudgetExceeded",
		"OcpdrForwarderUndeliverableEvents", "OcpdrExportWatchUndeliverableEvents",
		"OcpdrReceiverStoreUnavailable", "OcpdrReceiverEventsLost"} {
		if !strings.Contains(rules, "alert: "+a+"\n") {
			t.Errorf("alert %s missing", a)
		}
	}
}

// goSources calls fn with every non-test Go file under the given top-level
// directories.
func goSources(t *testing.T, fn func(string), dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		err := filepath.Walk(filepath.Join(root(), d), func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err == nil {
				fn(string(b))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// senderSubsystems lists the subsystems pkg/sender's metrics are created
// under: the second argument of every sender.NewMetrics call.
func senderSubsystems(t *testing.T) []string {
	t.Helper()
	var subs []string
	call := regexp.MustCompile(`sender\.NewMetrics\([^,]+,\s*"([a-z_]+)"\)`)
	goSources(t, func(src string) {
		for _, m := range call.FindAllStringSubmatch(src, -1) {
			subs = append(subs, m[1])
		}
	}, "pkg", "cmd")
	return subs
}

// exported lists the metric names the project exports: Go collectors with
// Namespace/Subsystem/Name (receiver ones get the ocpdr_ prefix from the
// receiver's registerer; pkg/sender's get each caller's subsystem) and the
// periodic sync's textfile metrics.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	full := regexp.MustCompile(`Namespace:\s*"ocpdr",\s*Subsystem:\s*(?:"([a-z_]+)"|subsystem),\s*Name:\s*"([a-z_]+)"`)
	recv := regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(receiver_[a-z_]+)"`)
	subs := senderSubsystems(t)
	goSources(t, func(src string) {
		for _, m := range full.FindAllStringSubmatch(src, -1) {
			if m[1] != "" {
				names["ocpdr_"+m[1]+"_"+m[2]] = true
				continue
			}
			for _, sub := range subs {
				names["ocpdr_"+sub+"_"+m[2]] = true
			}
		}
		for _, m := range recv.FindAllStringSubmatch(src, -1) {
			names["ocpdr_"+m[1]] = true
		}
	}, "pkg")
	for _, m := range regexp.MustCompile(`(?m)^\s*(ocpdr_periodic_sync_[a-z_]+)[ {]`).FindAllStringSubmatch(string(read(t, "roles/periodic_storage_sync/tasks/main.yml")), -1) {
		names[m[1]] = true
	}
	return names
}

func TestMetricNamesExist(t *testing.T) {
	names := exported(t)
	for _, want := range []string{"ocpdr_forwarder_queue_depth", "ocpdr_receiver_inbox_depth", "ocpdr_receiver_replication_lag_seconds",
		"ocpdr_exportwatch_queue_overflows_total", "ocpdr_periodic_sync_last_run_timestamp_seconds",
		"ocpdr_forwarder_undeliverable_events_total", "ocpdr_exportwatch_undeliverable_events_total", "ocpdr_receiver_failover_ready"} {
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

// Every runbook_url of an alert names a runbook in this repository's
// docs/runbooks that exists.
func TestRunbooksExist(t *testing.T) {
	var pr struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert       string            `json:"alert"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(read(t, "deploy/monitoring/prometheusrule.yaml"), &pr); err != nil {
		t.Fatal(err)
	}
	const prefix = "https://github.com/ocpv-dr/ocpv-dr/blob/main/"
	n := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			u, ok := r.Annotations["runbook_url"]
			if !ok {
				continue
			}
			n++
			rel, found := strings.CutPrefix(u, prefix)
			if !found || !strings.HasPrefix(rel, "docs/runbooks/") {
				t.Errorf("alert %s: runbook_url %s is not %sdocs/runbooks/...", r.Alert, u, prefix)
				continue
			}
			if _, err := os.Stat(filepath.Join(root(), rel)); err != nil {
				t.Errorf("alert %s: runbook %s: %v", r.Alert, rel, err)
			}
		}
	}
	if n == 0 {
		t.Error("no alert has a runbook_url")
	}
}
