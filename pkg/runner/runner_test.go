package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
)

// ansible is Debian's ansible-playbook (the one the project supports, core 2.14).
const ansible = "/usr/bin/ansible-playbook"

func newRunner(t *testing.T) (*Runner, string) {
	t.Helper()
	if _, err := os.Stat(ansible); err != nil {
		t.Fatalf("%s is required: %v", ansible, err)
	}
	cat, err := LoadCatalog("testdata/catalog.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Check(); err != nil {
		t.Fatal(err)
	}
	logs := filepath.Join(t.TempDir(), "jobs")
	r, err := New(Config{Catalog: cat, Inventory: "testdata/inventory.ini", LogDir: logs, AnsiblePlaybook: ansible})
	if err != nil {
		t.Fatal(err)
	}
	return r, logs
}

func eventVars(out string) map[string]any {
	return map[string]any{
		"out_file": out, "greeting": "hello; rm -rf / $(id)",
		"ansible_eda": map[string]any{"ruleset": "rs", "rule": "r", "event": map[string]any{"payload": map[string]any{"name": "pv-one"}}},
	}
}

// A real ansible-playbook run: the template name maps to a playbook, the extra
// vars (ansible_eda included) arrive intact (no shell), the log is per job.
func TestRunsRealPlaybook(t *testing.T) {
	r, logs := newRunner(t)
	cases := []struct {
		name   string
		req    dispatch.JobRequest
		status string
		output bool
	}{
		{"job template", dispatch.JobRequest{Kind: dispatch.KindJobTemplate, Name: "Record", JobID: 1}, "successful", true},
		{"workflow template", dispatch.JobRequest{Kind: dispatch.KindWorkflowTemplate, Name: "Record workflow", JobID: 2}, "successful", true},
		{"run_playbook by path", dispatch.JobRequest{Kind: dispatch.KindPlaybook, Name: "playbooks/record.yml", JobID: 3, Limit: "localhost"}, "successful", true},
		{"failing playbook", dispatch.JobRequest{Kind: dispatch.KindJobTemplate, Name: "Fail", JobID: 4}, "failed", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.txt")
			c.req.ExtraVars = eventVars(out)
			res, err := r.Run(context.Background(), c.req)
			if err != nil {
				t.Fatal(err)
			}
			log, _ := os.ReadFile(res.LogPath)
			if res.Status != c.status {
				t.Fatalf("status %s, want %s; log:\n%s", res.Status, c.status, log)
			}
			if res.LogPath != filepath.Join(logs, "job-"+itoa(c.req.JobID)+".log") || !strings.Contains(string(log), "PLAY [") ||
				strings.Contains(string(log), "WARNING") {
				t.Errorf("log %s:\n%s", res.LogPath, log)
			}
			if !strings.Contains(string(log), "status "+c.status) || res.Finished.Before(res.Started) {
				t.Errorf("status/duration not recorded")
			}
			got, err := os.ReadFile(out)
			if c.output && (err != nil || string(got) != "pv-one hello; rm -rf / $(id)\n") {
				t.Fatalf("playbook output %q, %v", got, err)
			}
			if !c.output && err == nil {
				t.Fatalf("failed playbook wrote output")
			}
			if _, err := os.Stat(filepath.Join(logs, "job-"+itoa(c.req.JobID)+".vars.yml")); !os.IsNotExist(err) {
				t.Errorf("extra vars file left behind")
			}
		})
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestRunErrors(t *testing.T) {
	r, _ := newRunner(t)
	for _, req := range []dispatch.JobRequest{
		{Kind: dispatch.KindJobTemplate, Name: "Unknown"},
		{Kind: dispatch.KindWorkflowTemplate, Name: "Record"}, // a job template name, not a workflow
		{Kind: dispatch.KindPlaybook, Name: "playbooks/missing.yml"},
	} {
		if _, err := r.Run(context.Background(), req); err == nil {
			t.Errorf("%+v: no error", req)
		}
	}
}

func TestCatalogValidation(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.yml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := []string{
		"job_templates:\n  - name: A\n    playbook: ../outside.yml\n",
		"job_templates:\n  - name: A\n    playbook: a.yml\n  - name: A\n    playbook: b.yml\n",
		"job_templates:\n  - name: A\n",
		"unknown_key: 1\n",
	}
	for _, b := range bad {
		if _, err := LoadCatalog(write(b)); err == nil {
			t.Errorf("accepted %q", b)
		}
	}
	c, err := LoadCatalog(write("job_templates:\n  - name: A\n    playbook: missing.yml\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err == nil || !strings.Contains(err.Error(), "missing.yml") {
		t.Errorf("check: %v", err)
	}
}

// Event values are data: a template in any string of an event, key or value,
// must never run on the Ansible host (issue 15.1), however a playbook uses
// it, and the job still succeeds with the values intact. Before the runner
// marked extra vars !unsafe, the marker files below were created.
func TestEventValuesAreNeverTemplated(t *testing.T) {
	r, _ := newRunner(t)
	dir := t.TempDir()
	marker := func(n string) string { return filepath.Join(dir, "pwned-"+n) }
	hostile := func(n string) string { return "{{ lookup('pipe', 'touch " + marker(n) + "') }}" }
	out := filepath.Join(dir, "out.txt")
	vars := map[string]any{
		"out_file": out,
		"pv_object": map[string]any{
			"metadata": map[string]any{
				"name":        "{% raw %}x{% endraw %}" + hostile("name"),
				"annotations": map[string]any{"ocpv-dr.io/note": hostile("value"), hostile("key"): "k"},
			},
			"spec": map[string]any{
				"list":  []any{hostile("list"), "plain"},
				"count": 3, "big": json.Number("123456789012345678901234567890"), "ratio": 0.5, "on": true, "none": nil,
			},
		},
	}
	res, err := r.Run(context.Background(), dispatch.JobRequest{Kind: dispatch.KindJobTemplate, Name: "Use event values", JobID: 9, ExtraVars: vars})
	if err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(res.LogPath)
	if res.Status != "successful" {
		t.Fatalf("status %s; log:\n%s", res.Status, log)
	}
	for _, n := range []string{"name", "value", "key", "list"} {
		if _, err := os.Stat(marker(n)); err == nil {
			t.Errorf("the template in the event's %s ran on the Ansible host", n)
		}
	}
	got, _ := os.ReadFile(out)
	for _, want := range []string{
		"ocpv-dr.io/note=" + hostile("value"), hostile("key") + "=k", "list=" + hostile("list") + ",plain",
		"name={% raw %}x{% endraw %}" + hostile("name"), "types=int,int,float,bool,NoneType", "big=123456789012345678901234567890",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
