// Declared template variables: a catalog's `variables` and `confirm`, and
// the checks a launch's extra vars go through.
package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
)

func TestDeclaredVariables(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yml")
	body := `job_templates:
  - name: DR - Execute Failover
    playbook: f.yml
    variables:
      - {name: dr_failover_namespaces, type: list, required: true}
      - {name: dr_recovery_point, choices: [latest, latest-application-consistent]}
      - {name: retries, type: int}
  - {name: Drill, playbook: d.yml, confirm: true}
`
	if err := os.WriteFile(cat, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadCatalog(cat)
	if err != nil {
		t.Fatal(err)
	}
	spec, ok := c.Spec(dispatch.KindJobTemplate, "DR - Execute Failover")
	if d, _ := c.Spec(dispatch.KindJobTemplate, "Drill"); !ok || !spec.Confirm || !d.Confirm {
		t.Fatalf("confirm: failover %v, drill %v", spec.Confirm, d.Confirm)
	}
	cases := []struct {
		vars map[string]any
		err  string
	}{
		{map[string]any{"dr_failover_namespaces": []any{"vms"}, "dr_recovery_point": "latest", "retries": float64(2)}, ""},
		{map[string]any{}, "dr_failover_namespaces is required"},
		{map[string]any{"dr_failover_namespaces": "vms"}, "dr_failover_namespaces must be of type list"},
		{map[string]any{"dr_failover_namespaces": []any{}, "dr_recovery_point": "yesterday"}, "must be one of"},
		{map[string]any{"dr_failover_namespaces": []any{}, "retries": 1.5}, "retries must be of type int"},
		{map[string]any{"dr_failover_namespaces": []any{}, "ansible_python_interpreter": "/tmp/x"}, "not a variable"},
	}
	for _, tc := range cases {
		err := spec.Validate(tc.vars)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v: %v, want %q", tc.vars, err, tc.err)
		}
	}
	if err := os.WriteFile(cat, []byte("job_templates:\n  - {name: X, playbook: x.yml, variables: [{name: v, type: float}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCatalog(cat); err == nil || !strings.Contains(err.Error(), `type "float"`) {
		t.Errorf("bad type accepted: %v", err)
	}
}
