package rulebookcmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const shipped = "../../rulebooks/ocp_dr_events.yml"

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var cmd = NewMatchCommand()
	if args[0] == "check" {
		cmd = NewCheckCommand()
	}
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args[1:])
	err := cmd.Execute()
	return out.String(), err
}

// Each sample forwarder payload fires exactly the rule it should.
func TestShippedRulebookOnSampleEvents(t *testing.T) {
	tests := []struct {
		event    string
		rule     string // "" means nothing fires
		template string
		varName  string
	}{
		{"pv-added", "Sync NFS PV on create or update", "EDA - Sync NFS PV to DR", "pv_object"},
		{"pv-modified", "Sync NFS PV on create or update", "EDA - Sync NFS PV to DR", "pv_object"},
		{"pv-deleted", "Archive NFS PV on delete", "EDA - Delete NFS PV from DR", "pv_object"},
		{"pv-other-class", "", "", ""},
		{"snapshot-added-not-ready", "", "", ""},
		{"snapshot-ready", "Record VolumeSnapshot when ready", "EDA - Sync VolumeSnapshot Metadata", "snapshot_object"},
		{"snapshot-deleted", "Remove VolumeSnapshot metadata on delete", "EDA - Delete VolumeSnapshot Metadata", "snapshot_object"},
		{"nfs-directory-modified", "Sync NFS directory written on the primary", "EDA - Sync NFS Path to DR", "nfs_path_object"},
	}
	for _, tt := range tests {
		t.Run(tt.event, func(t *testing.T) {
			ev := filepath.Join("../../examples/events", tt.event+".json")
			out, err := run(t, "match", shipped, "--event", ev)
			if err != nil {
				t.Fatal(err)
			}
			if tt.rule == "" {
				if out != "" {
					t.Fatalf("expected no action, got %s", out)
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 1 {
				t.Fatalf("want one action, got %d:\n%s", len(lines), out)
			}
			var got struct {
				Rule, Action string
				Args         struct {
					Name, Organization string
					JobArgs            struct {
						ExtraVars map[string]any `json:"extra_vars"`
					} `json:"job_args"`
				}
				MatchingEvents map[string]any `json:"matching_events"`
			}
			if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
				t.Fatal(err)
			}
			if got.Rule != tt.rule || got.Action != "run_job_template" || got.Args.Name != tt.template || got.Args.Organization != "Default" {
				t.Errorf("fired %+v", got)
			}
			obj, ok := got.Args.JobArgs.ExtraVars[tt.varName].(map[string]any)
			if !ok {
				t.Fatalf("extra_vars.%s is not an object: %v", tt.varName, got.Args.JobArgs.ExtraVars)
			}
			raw, _ := os.ReadFile(ev)
			var payload map[string]any
			_ = json.Unmarshal(raw, &payload)
			want := payload["resource"].(map[string]any)["metadata"].(map[string]any)["uid"]
			if obj["metadata"].(map[string]any)["uid"] != want {
				t.Errorf("%s is not the event's resource", tt.varName)
			}
			if _, ok := got.MatchingEvents["m"].(map[string]any)["payload"]; !ok {
				t.Errorf("matching event lacks payload (webhook wrapping): %v", got.MatchingEvents)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	out, err := run(t, "check", shipped)
	if err != nil || !strings.Contains(out, "valid (1 rulesets, 5 enabled rules)") {
		t.Fatalf("check shipped = %q, %v", out, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yml")
	_ = os.WriteFile(bad, []byte(`- name: x
  hosts: all
  sources:
    - ansible.eda.webhook: {}
  rules:
    - name: r1
      condition: event.a == 1 and
      action:
        debug:
    - name: r2
      condition: event.b == 2
      colour: red
      action:
        run_job_template:
          name: t
`), 0o644)
	_, err = run(t, "check", bad)
	if err == nil {
		t.Fatal("invalid rulebook accepted")
	}
	for _, want := range []string{"bad.yml:7:", `unknown key "colour"`, `needs "organization"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestRawEventsAreNotWrapped(t *testing.T) {
	ev := filepath.Join(t.TempDir(), "raw.json")
	b, _ := os.ReadFile("../../examples/events/pv-added.json")
	_ = os.WriteFile(ev, []byte(`{"payload": `+string(b)+`}`), 0o644)
	out, err := run(t, "match", shipped, "--raw", "--event", ev)
	if err != nil || !strings.Contains(out, "EDA - Sync NFS PV to DR") {
		t.Fatalf("raw match = %q, %v", out, err)
	}
}

// Time windows still open when the input ends fire then: a once_after
// throttle prints one action with every host's event.
func TestMatchFlushesWindowsAtEndOfInput(t *testing.T) {
	dir := t.TempDir()
	rb := filepath.Join(dir, "rb.yml")
	if err := os.WriteFile(rb, []byte(`
- name: rs
  hosts: all
  sources: [{ansible.eda.webhook: {host: 0.0.0.0, port: 5000}}]
  rules:
    - name: summary
      condition: event.payload.kind == "alert"
      throttle: {once_after: 5 minutes, group_by_attributes: [event.payload.host]}
      action: {debug: {}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var args []string
	for i, host := range []string{"a", "b", "a"} {
		f := filepath.Join(dir, fmt.Sprintf("e%d.json", i))
		_ = os.WriteFile(f, []byte(`{"kind": "alert", "host": "`+host+`"}`), 0o644)
		args = append(args, "--event", f)
	}
	out, err := run(t, append([]string{"match", rb}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"m_0"`) || !strings.Contains(lines[0], `"m_1"`) || strings.Contains(lines[0], `"m_2"`) {
		t.Fatalf("want one firing with the two hosts' events, got:\n%s", out)
	}
}
