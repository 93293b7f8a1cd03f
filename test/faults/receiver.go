// Package faults is ocpv-dr's fault suite: the real receiver binary under a
// full disk, damaged state files, hostile clients and failing peers. Every
// test counts the events a sender had acknowledged and the events found
// after recovery; the difference must be zero. Rows go to FAULTS.md through
// `make faults` (FAULTS_OUT names the JSON lines file a run appends to).
package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// repoRoot is the repository this package lives in.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// receiverBin is the receiver `make build` put into .cache/bin.
func receiverBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the built receiver and root (fault suite; runs in `make test`)")
	}
	p := filepath.Join(repoRoot(t), ".cache", "bin", "receiver")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `make build` (make test does): %v", p, err)
	}
	return p
}

// receiver is one running receiver process.
type receiver struct {
	*lab.Receiver
	t     *testing.T
	url   string
	token string
}

const testToken = "fault-suite-webhook-token-0123456789abcdef"

// startReceiver runs `receiver serve` on a free loopback port with the
// shipped rulebook and its state in stateDir.
func startReceiver(t *testing.T, stateDir string, extra ...string) *receiver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logPath := filepath.Join(t.TempDir(), "receiver.log")
	lr, err := lab.StartReceiver(ctx, lab.ReceiverSpec{
		Bin: receiverBin(t), StateDir: stateDir, Token: testToken,
		Rulebook:  filepath.Join(repoRoot(t), "rulebooks", "ocp_dr_events.yml"),
		Args:      append([]string{"--job-log-dir", filepath.Join(t.TempDir(), "jobs"), "--shutdown-timeout", "5s"}, extra...),
		Log:       logPath,
		ReadyPath: "/healthz",
	})
	if err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("receiver did not start: %v:\n%s", err, b)
	}
	t.Cleanup(lr.Kill)
	return &receiver{Receiver: lr, t: t, url: lr.URL, token: testToken}
}

func (r *receiver) logText() string { return r.LogText() }

var client = &http.Client{Timeout: 10 * time.Second}

func (r *receiver) get(path string) (int, string) {
	resp, err := client.Get(r.url + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = fmt.Fprint(&b, readAll(resp))
	return resp.StatusCode, b.String()
}

func readAll(resp *http.Response) string {
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	return string(buf[:n])
}

// post sends one forwarder-shaped event with the given idempotency id and
// returns the status code and body.
func (r *receiver) post(ctx context.Context, id string, padding int) (int, string) {
	body, _ := json.Marshal(map[string]any{
		"id": id, "kind": "FaultProbe", "type": "MODIFIED", "cluster": "faults",
		"resource": map[string]any{"metadata": map[string]any{"name": id}, "data": strings.Repeat("x", padding)},
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"/endpoint", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(resp)
}

// stop sends SIGTERM and returns how long the receiver took to exit; it
// fails the test beyond limit.
func (r *receiver) stop(limit time.Duration) time.Duration {
	r.t.Helper()
	took, err := r.Stop(limit)
	if err != nil {
		r.t.Fatalf("receiver ignored SIGTERM for %s:\n%s", limit, r.logText())
	}
	return took
}

// waitReady polls /readyz until it answers want or the timeout passes and
// returns the last body.
func (r *receiver) waitReady(want int, timeout time.Duration) (string, bool) {
	deadline := time.Now().Add(timeout)
	var body string
	for {
		var code int
		code, body = r.get("/readyz")
		if code == want {
			return body, true
		}
		if time.Now().After(deadline) {
			return body, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// awaitStored polls the running receiver's /api/v1/events until every id is
// listed or the timeout passes, and returns the ids still missing.
func (r *receiver) awaitStored(t *testing.T, ids []string, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		missing := lost(ids, r.listedIDs(t))
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *receiver) listedIDs(t *testing.T) map[string]bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.url+"/api/v1/events?limit=100000", nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Events []struct {
			ID string `json:"id"`
		} `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("decode /api/v1/events: %v", err)
	}
	ids := make(map[string]bool, len(got.Events))
	for _, e := range got.Events {
		ids[e.ID] = true
	}
	return ids
}
