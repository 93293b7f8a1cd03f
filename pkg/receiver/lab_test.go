package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

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
