// POST /api/v1/launch: who may launch (the operator token only, never the
// webhook token or the page's cookie), what (declared variables of the
// catalog template) and a failover only when confirmed with the site name.
package receiver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

func waitJob(t *testing.T, base string, id uint64) inbox.Job {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
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
		time.Sleep(100 * time.Millisecond)
	}
}

func jsonNum(id uint64) string { b, _ := json.Marshal(id); return string(b) }

func TestLaunchAuthAndValidation(t *testing.T) {
	cfg := volumeConfig(t)
	core, logs := observer.New(zap.InfoLevel)
	r := serveLog(t, cfg, syncEngine{}, zap.New(core))
	base := "http://" + r.addr
	ok := `{"template":"Sync report","extra_vars":{"sync_report_volumes":[{"name":"pv-l","status":"synced"}]}}`
	cases := []struct {
		name, token, body string
		want              int
		says              string
	}{
		{"webhook token cannot launch", testToken, ok, 403, "webhook token"},
		{"no token cannot launch", "", ok, 401, ""},
		{"undeclared variable", testOperator, `{"template":"Sync report","extra_vars":{"rm_rf":"/"}}`, 400, "rm_rf is not a variable"},
		{"wrong type", testOperator, `{"template":"Sync report","extra_vars":{"sync_report_fail":"yes"}}`, 400, "sync_report_fail must be of type bool"},
		{"unknown template", testOperator, `{"template":"Nope"}`, 404, "not in the catalog"},
		{"unknown field", testOperator, `{"template":"Sync report","limit":"all"}`, 400, "unknown field"},
		{"failover without confirmation", testOperator, `{"template":"DR - Execute Failover"}`, 412, "--confirm dr"},
		{"failover confirmed for another site", testOperator, `{"template":"DR - Execute Failover","confirm":"primary"}`, 412, "--confirm dr"},
		{"failover bad choice", testOperator, `{"template":"DR - Execute Failover","confirm":"dr","extra_vars":{"dr_recovery_point":"x"}}`, 400, "one of"},
		{"failover confirmed", testOperator, `{"template":"DR - Execute Failover","confirm":"dr","extra_vars":{"dr_recovery_point":"latest"}}`, 202, `"job"`},
		{"operator launches", testOperator, ok, 202, `"job"`},
	}
	for _, c := range cases {
		s, body := do(t, http.DefaultClient, "POST", base+"/api/v1/launch", c.token, c.body)
		if s != c.want || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, s, body, c.want, c.says)
			continue
		}
		if s == 202 && strings.Contains(c.body, "pv-l") {
			var out struct{ Job uint64 }
			_ = json.Unmarshal([]byte(body), &out)
			if j := waitJob(t, base, out.Job); j.Status != "successful" || j.Rule != "launch" {
				t.Errorf("launched job %+v", j)
			}
			if v := waitVolumes(t, base, 1); v.Volumes[0].Name != "pv-l" {
				t.Errorf("launched sync did not report its volume: %+v", v)
			}
		}
	}
	// Every launch and refusal is audited, with the variable names and
	// never their values.
	audit := logs.FilterLoggerName("audit")
	if n := audit.FilterMessage("launch").Len(); n != 2 {
		t.Errorf("%d launches audited, want 2", n)
	}
	if n := audit.FilterMessage("launch refused").Len(); n != 9 {
		t.Errorf("%d refusals audited, want 9", n)
	}
	for _, e := range audit.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "pv-l") {
			t.Errorf("audit log holds a variable's value: %v", e.ContextMap())
		}
	}
	// The page's session cookie reads but never launches.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(base+"/api/v1/login", url.Values{"token": {testOperator}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("POST", base+"/api/v1/launch", strings.NewReader(ok))
	req.AddCookie(resp.Cookies()[0])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Errorf("launch with the session cookie: %d, want 401", res.StatusCode)
	}
}
