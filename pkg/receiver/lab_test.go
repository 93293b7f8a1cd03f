package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// The shipped rulebook, the shipped catalog and the repository's event
// playbook, run by the local runner against the lab: a PV event POSTed to the
// receiver replicates the PV's directory to the DR NFS host over SSH.
func TestShippedRulebookSyncsPVOnTheLab(t *testing.T) {
	l := lab.Get(t)
	root, _ := filepath.Abs("../..")
	t.Setenv("ANSIBLE_CONFIG", filepath.Join(root, "ansible.cfg"))
	src := filepath.Join(l.Primary.ExportRoot, "rcv-lab-pv")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"disk.img": "disk bytes from the primary", "sub/meta": "more"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(root, "examples/events/pv-added.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	ev["id"] = "rcv-lab-1"
	res := ev["resource"].(map[string]any)
	res["metadata"].(map[string]any)["name"] = "rcv-lab-pv"
	res["spec"].(map[string]any)["nfs"] = map[string]any{"server": l.Primary.NFSHost, "path": src}
	body, _ := json.Marshal(ev)

	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Rulebook = filepath.Join(root, "rulebooks/ocp_dr_events.yml")
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.WebhookToken = testToken
	cfg.JobTemplates = filepath.Join(root, "examples/job-templates.yml")
	cfg.Inventory = l.Inventory
	cfg.AnsiblePlaybook = "/usr/bin/ansible-playbook"
	addrc := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Deps{Logger: zap.NewNop(), NewEngine: RulebookEngine, WrapEvent: WrapEntry, OnListen: func(a, _ string) { addrc <- a }})
	}()
	defer func() { cancel(); <-done }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatal(err)
	}
	if s, text := do(t, http.DefaultClient, "POST", "http://"+addr+"/endpoint", testToken, string(body)); s != 200 || text != "endpoint" {
		t.Fatalf("POST: %d %q", s, text)
	}
	var view struct {
		Events []EventView `json:"events"`
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		_, b := do(t, http.DefaultClient, "GET", "http://"+addr+"/api/v1/events?limit=1", testToken, "")
		if err := json.Unmarshal([]byte(b), &view); err != nil {
			t.Fatal(err)
		}
		if len(view.Events) == 1 && view.Events[0].State != "pending" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event not processed: %s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	e := view.Events[0]
	if e.State != "done" || len(e.Jobs) != 1 || e.Jobs[0].Name != "EDA - Sync NFS PV to DR" || e.Jobs[0].Status != "successful" {
		log, _ := os.ReadFile(e.Jobs[0].LogPath)
		t.Fatalf("event %+v\njob log:\n%s", e, log)
	}
	for name, content := range files {
		got, err := os.ReadFile(filepath.Join(l.DR.ExportRoot, "rcv-lab-pv", name))
		if err != nil || !bytes.Equal(got, []byte(content)) {
			t.Errorf("DR %s: %q %v", name, got, err)
		}
	}
}

// The shipped readiness check (catalog "DR - Readiness Check",
// playbooks/manual_dr/check_readiness.yml, roles/dr_readiness) launched
// through the API against the lab: with a Velero backup synced to DR and no
// fence, every fact is ok and the receiver says ready; with the DR-active
// marker on the DR export and a storage class DR lacks, those two facts fail,
// the job fails and the receiver says not ready.
func TestReadinessCheckOnTheLab(t *testing.T) {
	l := lab.Get(t)
	root, _ := filepath.Abs("../..")
	t.Setenv("ANSIBLE_CONFIG", filepath.Join(root, "ansible.cfg"))
	if err := l.LiftFence(t.Context()); err != nil {
		t.Fatal(err)
	}
	backup := "rcv-ready-" + time.Now().UTC().Format("150405")
	lab.BackupToDR(t, l, backup, []string{"default"})

	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Rulebook = filepath.Join(root, "rulebooks/ocp_dr_events.yml")
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.WebhookToken, cfg.OperatorToken = testToken, testOperator
	cfg.JobTemplates = filepath.Join(root, "examples/job-templates.yml")
	cfg.Inventory = l.Inventory
	cfg.AnsiblePlaybook = "/usr/bin/ansible-playbook"
	addrc := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Deps{Logger: zap.NewNop(), NewEngine: RulebookEngine, WrapEvent: WrapEntry, OnListen: func(a, _ string) { addrc <- a }})
	}()
	defer func() { cancel(); <-done }()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a
	case err := <-done:
		t.Fatal(err)
	}
	check := func(vars string) (inboxStatus string, rd drstate.Readiness) {
		t.Helper()
		s, out := do(t, http.DefaultClient, "POST", base+"/api/v1/launch", testOperator,
			`{"template":"DR - Readiness Check","extra_vars":`+vars+`}`)
		var res struct {
			Job uint64 `json:"job"`
		}
		if s != http.StatusAccepted || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("launch: %d %s", s, out)
		}
		j := waitJobFor(t, base, res.Job, 5*time.Minute)
		s, out = do(t, http.DefaultClient, "GET", base+"/api/v1/readiness", testOperator, "")
		if s != 200 || json.Unmarshal([]byte(out), &rd) != nil || rd.Job != res.Job {
			log, _ := os.ReadFile(j.LogPath)
			t.Fatalf("readiness of job %d: %d %s\njob log:\n%s", res.Job, s, out, log)
		}
		return j.Status, rd
	}
	facts := func(rd drstate.Readiness) map[string]drstate.Check {
		m := map[string]drstate.Check{}
		for _, c := range rd.Checks {
			m[c.Name] = c
		}
		return m
	}

	status, rd := check(`{"dr_readiness_backup_prefix":"` + lab.VeleroPrefix + `"}`)
	f := facts(rd)
	if status != "successful" || !rd.Ready {
		t.Errorf("with a backup and no fence: job %s, ready %v: %+v", status, rd.Ready, rd.Checks)
	}
	if b := f["backup"]; !b.OK || !strings.Contains(b.Detail, backup+" completed ") || b.AgeSeconds < 0 || b.AgeSeconds > 600 {
		t.Errorf("backup fact %+v, want %s", b, backup)
	}
	if c := f["fence"]; !c.OK || !strings.Contains(c.Detail, "standby") {
		t.Errorf("fence fact %+v", c)
	}

	marker := filepath.Join(l.DR.ExportRoot, ".ocpdr-dr-active")
	if err := os.WriteFile(marker, []byte("test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.LiftFence(context.Background()) })
	status, rd = check(`{"dr_readiness_backup_prefix":"` + lab.VeleroPrefix + `","dr_readiness_storage_classes":["nfs-dynamic","rcv-missing"]}`)
	f = facts(rd)
	if status != "failed" || rd.Ready {
		t.Errorf("with the fence up: job %s, ready %v", status, rd.Ready)
	}
	if c := f["fence"]; c.OK || !strings.Contains(c.Detail, "marker .ocpdr-dr-active") {
		t.Errorf("fence fact %+v", c)
	}
	if c := f["storage_classes"]; c.OK || c.Detail != "missing at DR: rcv-missing" {
		t.Errorf("storage class fact %+v", c)
	}
	for _, name := range []string{"backup", "s3", "dr_api", "dr_nfs"} {
		if !f[name].OK {
			t.Errorf("%s fact failed: %+v", name, f[name])
		}
	}
}

func waitJobFor(t *testing.T, base string, id uint64, d time.Duration) inbox.Job {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s, body := do(t, http.DefaultClient, "GET", base+"/api/v1/jobs/"+jsonNum(id), testOperator, "")
		var j inbox.Job
		if s != 200 || json.Unmarshal([]byte(body), &j) != nil {
			t.Fatal(s, body)
		}
		if j.Finished != nil {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d did not finish: %s", id, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
