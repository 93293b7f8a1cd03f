package schedule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
)

func TestParseEntries(t *testing.T) {
	entries, err := Parse([]byte(`
- name: periodic-sync
  cron: "@hourly"
  job_template: "DR - Periodic Storage Sync"
  organization: Default
  extra_vars: {scope: all, depth: 2}
- name: drill
  cron: "0 3 * * 0"
  workflow_template: "DR drill"
  enabled: false
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d entries", len(entries))
	}
	sync, drill := entries[0], entries[1]
	if !sync.IsEnabled() || sync.Kind() != dispatch.KindJobTemplate || sync.Action() != "run_job_template" ||
		sync.Template() != "DR - Periodic Storage Sync" || sync.Organization != "Default" || sync.ExtraVars["scope"] != "all" || sync.ExtraVars["depth"] != 2 {
		t.Errorf("periodic-sync: %+v", sync)
	}
	if drill.IsEnabled() || drill.Kind() != dispatch.KindWorkflowTemplate || drill.Action() != "run_workflow_template" || drill.Template() != "DR drill" {
		t.Errorf("drill: %+v", drill)
	}
	at := time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)
	if got := sync.Next(at); !got.Equal(time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("@hourly after %s: %s", at, got)
	}
	if entries, err := Parse([]byte("# nothing scheduled\n")); err != nil || len(entries) != 0 {
		t.Errorf("empty document: %v %v", entries, err)
	}
}

// A bad file is refused with an error naming the entry (its position, line
// and name) and the problem.
func TestParseRefusesBadEntries(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []string
	}{
		{"bad cron field", `- {name: sync, cron: "61 * * * *", job_template: T}`,
			[]string{`schedule 1 ("sync")`, `cron "61 * * * *"`, "61"}},
		{"unknown descriptor, second entry", "- {name: sync, cron: '@hourly', job_template: T}\n- {name: drill, cron: '@fortnightly', job_template: D}",
			[]string{`line 2: schedule 2 ("drill")`, `cron "@fortnightly"`}},
		{"unknown key", "- name: sync\n  cron: '@hourly'\n  job_template: T\n  extra_var: {a: 1}",
			[]string{`schedule 1 ("sync")`, `unknown key "extra_var" on line 4`, "extra_vars"}},
		{"misspelt enabled", "- {name: sync, cron: '@hourly', job_template: T, enable: false}",
			[]string{`("sync")`, `unknown key "enable"`}},
		{"enabled not a boolean", "- {name: sync, cron: '@hourly', job_template: T, enabled: sometimes}",
			[]string{`("sync")`, "sometimes"}},
		{"no name", "- {cron: '@hourly', job_template: T}", []string{"line 1: schedule 1:", "name is required"}},
		{"no template", "- {name: sync, cron: '@hourly'}", []string{`("sync")`, "job_template or workflow_template is required"}},
		{"both templates", "- {name: sync, cron: '@hourly', job_template: T, workflow_template: W}", []string{`("sync")`, "not both"}},
		{"no cron", "- {name: sync, job_template: T}", []string{`("sync")`, "cron is required"}},
		{"never due", "- {name: leap, cron: '0 0 30 2 *', job_template: T}", []string{`("leap")`, "never comes due"}},
		{"duplicate name", "- {name: sync, cron: '@hourly', job_template: T}\n- {name: sync, cron: '@daily', job_template: T}",
			[]string{`schedule 2 ("sync")`, "already used by schedule 1"}},
		{"not a list", "name: sync\ncron: '@hourly'\n", []string{"want a list"}},
		{"entry not a mapping", "- sync\n", []string{"schedule 1", "want a mapping"}},
		{"not YAML", "- {name: [\n", []string{"not YAML"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			entries, err := Parse([]byte(c.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", entries)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "schedules.yml")
	if err := os.WriteFile(p, []byte("- {name: sync, cron: 'every hour', job_template: T}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), `("sync")`) {
		t.Fatalf("Load: %v", err)
	}
	if _, err := Load(p + ".missing"); err == nil || !strings.Contains(err.Error(), "schedules.yml.missing") {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

// The shipped example is valid and runs the periodic sync template of the
// local runner's catalog hourly.
func TestExampleFile(t *testing.T) {
	entries, err := Load("../../examples/schedules.yml")
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := os.ReadFile("../../examples/job-templates.yml")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if !strings.Contains(string(catalog), `"`+e.Template()+`"`) {
			t.Errorf("schedule %q: template %q is not in examples/job-templates.yml", e.Name, e.Template())
		}
		if e.Template() == "DR - Periodic Storage Sync" && e.IsEnabled() && e.Cron == "@hourly" {
			found = true
		}
	}
	if !found {
		t.Errorf("no enabled hourly periodic sync in %+v", entries)
	}
}
