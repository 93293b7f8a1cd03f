// `receiver launch --follow` and `receiver logs` against a real receiver
// running real playbooks: the log is printed, the exit status follows the
// job, and a failover needs --confirm with the site name.
package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/receiver"
)

type noRules struct{}

func (noRules) Process(map[string]any) ([]dispatch.Fired, error)           { return nil, nil }
func (noRules) PostEvent(string, map[string]any) ([]dispatch.Fired, error) { return nil, nil }
func (noRules) SetFact(string, map[string]any) ([]dispatch.Fired, error)   { return nil, nil }

const cliOperator = "cli-test-operator-token-0123456789abcdefghij"

func startLocalReceiver(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rb := filepath.Join(dir, "rulebook.yml")
	if err := os.WriteFile(rb, []byte("---\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := receiver.Defaults()
	cfg.Listen, cfg.Rulebook, cfg.StateDir = "127.0.0.1:0", rb, filepath.Join(dir, "state")
	cfg.WebhookToken, cfg.OperatorToken = "cli-test-webhook-token-0123456789abcdefghij", cliOperator
	cfg.JobTemplates, cfg.Inventory = "../../pkg/receiver/testdata/catalog.yml", "../../pkg/runner/testdata/inventory.ini"
	cfg.AnsiblePlaybook = "/usr/bin/ansible-playbook"
	addr := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- receiver.Run(ctx, cfg, receiver.Deps{Logger: zap.NewNop(), Registry: prometheus.NewRegistry(),
			NewEngine: func(receiver.Config, *zap.Logger) (dispatch.Engine, error) { return noRules{}, nil },
			OnListen:  func(a, _ string) { addr <- a }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addr:
		return "http://" + a
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("receiver did not start")
	}
	return ""
}

// exitOf is the process exit code of a command's error (0 for none).
func exitOf(err error) int {
	if err == nil {
		return 0
	}
	return exitCode(err)
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String() + errOut.String(), err
}

func TestLaunchFollowAndLogs(t *testing.T) {
	url := startLocalReceiver(t)
	t.Setenv("RECEIVER_OPERATOR_TOKEN", cliOperator)
	cases := []struct {
		name    string
		args    []string
		wantErr string
		says    string
	}{
		{"sync succeeds", []string{"launch", "Sync report", "-e", `sync_report_volumes=[{"name":"pv-1","status":"synced"}]`, "--follow"},
			"", "Write the job result file"},
		{"sync fails", []string{"launch", "Sync report", "-e", "sync_report_fail=true", "--follow"}, "failed", "Sync failed"},
		{"failover unconfirmed", []string{"launch", "DR - Execute Failover"}, "--confirm dr", ""},
		{"failover confirmed", []string{"launch", "DR - Execute Failover", "--confirm", "dr", "--follow"}, "", "job 3 successful"},
	}
	for _, c := range cases {
		out, err := runCLI(t, append(c.args, "--url", url)...)
		if (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) || !strings.Contains(out, c.says) {
			t.Errorf("%s: err %v, output:\n%s", c.name, err, out)
		}
	}
	out, err := runCLI(t, "logs", "1", "--url", url)
	if err != nil || !strings.Contains(out, "PLAY RECAP") {
		t.Errorf("logs 1: %v\n%s", err, out)
	}
	// preflight: pv-1 synced just now (ok) but no readiness check reported:
	// not ready; a readiness check with every fact ok makes it ready; a
	// raised fence, then a failed sync of pv-2, make it not ready.
	if out, err := runCLI(t, "preflight", "--url", url); exitOf(err) != 1 || !strings.Contains(out, "ok   no volume failing") ||
		!strings.Contains(out, "FAIL failover readiness: no readiness check has reported") {
		t.Errorf("preflight without a readiness check: exit %d\n%s", exitOf(err), out)
	}
	if out, err := runCLI(t, "launch", "DR - Readiness Check", "--follow", "--url", url); err != nil {
		t.Fatalf("readiness check: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "preflight", "--url", url); err != nil || !strings.Contains(out, "ok   Fence state: standby: no DR-active fence") ||
		!strings.Contains(out, "ok   Newest completed backup: velero-daily completed") {
		t.Errorf("preflight when ready: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "preflight", "--max-age", "1ns", "--url", url); exitOf(err) != 1 || !strings.Contains(out, "FAIL readiness check of job") {
		t.Errorf("preflight with a stale readiness check: exit %d\n%s", exitOf(err), out)
	}
	fenced := `readiness_checks=[{"name":"backup","ok":true},{"name":"s3","ok":true},{"name":"dr_api","ok":true},{"name":"dr_nfs","ok":true},` +
		`{"name":"storage_classes","ok":true},{"name":"fence","ok":false,"detail":"DR site active (failed over): the fence is up"}]`
	_, _ = runCLI(t, "launch", "DR - Readiness Check", "-e", fenced, "--follow", "--url", url)
	if out, err := runCLI(t, "preflight", "--url", url); exitOf(err) != 1 || !strings.Contains(out, "FAIL Fence state: DR site active (failed over): the fence is up") ||
		!strings.Contains(out, "ok   DR API reachable") {
		t.Errorf("preflight with the fence up: exit %d\n%s", exitOf(err), out)
	}
	_, _ = runCLI(t, "launch", "DR - Readiness Check", "--follow", "--url", url)
	_, _ = runCLI(t, "launch", "Sync report", "-e", `sync_report_volumes=[{"name":"pv-2","status":"failed","reason":"no route"}]`,
		"-e", "sync_report_fail=true", "--follow", "--url", url)
	out, err = runCLI(t, "preflight", "--url", url)
	if exitOf(err) != 1 || !strings.Contains(out, "FAIL no volume failing: pv-2 (no route)") {
		t.Errorf("preflight with a failing volume: exit %d\n%s", exitOf(err), out)
	}
	if _, err := runCLI(t, "preflight", "--url", "http://127.0.0.1:1"); exitCode(err) != 2 {
		t.Errorf("preflight without a receiver: exit %d", exitCode(err))
	}
	t.Setenv("RECEIVER_OPERATOR_TOKEN", "cli-test-webhook-token-0123456789abcdefghij")
	if _, err := runCLI(t, "logs", "1", "--url", url); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("logs with the webhook token: %v", err)
	}
}
