package receiver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// /api/v1/events?payload=true stays bounded however large and nested the
// stored bodies are (issue 15.9): bodies are returned as stored (not
// re-indented) and at most maxPayloadResponse bytes of them per answer.
func TestEventsPayloadResponseIsBounded(t *testing.T) {
	cfg := baseConfig(t)
	r := serve(t, cfg, recordEngine{})
	c := &http.Client{}
	nested := strings.Repeat(`{"a":[`, 30) + "1" + strings.Repeat("]}", 30)
	big := `{"nested":` + nested + `,"pad":"` + strings.Repeat("x", 900<<10) + `"}`
	const n = 24
	for i := 0; i < n; i++ {
		if code, body := do(t, c, "POST", "http://"+r.addr+"/endpoint", cfg.WebhookToken, big); code != 200 {
			t.Fatalf("post %d: %d %s", i, code, body)
		}
	}
	var code int
	var body string
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(50 * time.Millisecond) {
		// Acknowledged events become visible within the apply delay.
		code, body = do(t, c, "GET", fmt.Sprintf("http://%s/api/v1/events?payload=true&limit=%d", r.addr, n), cfg.WebhookToken, "")
		if code != 200 || strings.Count(body, `"seq"`) == n {
			break
		}
	}
	if code != 200 {
		t.Fatalf("GET: %d %s", code, body)
	}
	if len(body) > maxPayloadResponse+1<<20 {
		t.Errorf("answer is %d bytes, over the %d-byte bound", len(body), maxPayloadResponse)
	}
	var got struct {
		Events []struct {
			Payload json.RawMessage `json:"payload"`
		} `json:"events"`
		Truncated bool `json:"payloads_truncated"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	with := 0
	for _, e := range got.Events {
		if len(e.Payload) > 0 {
			with++
		}
	}
	if len(got.Events) != n || !got.Truncated || with == 0 || with == n {
		t.Errorf("%d events, %d with payload, truncated %v; want %d events, some payloads, truncated", len(got.Events), with, got.Truncated, n)
	}
}
