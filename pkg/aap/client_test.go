package aap

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ocpv-dr/ocpv-dr/pkg/aap/aaptest"
	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

func client(t *testing.T, url string, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{URL: url, Token: "tok", PollInterval: time.Millisecond, RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond, RetryMax: 3, Registerer: prometheus.NewRegistry()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func jtReq(name string) dispatch.JobRequest {
	return dispatch.JobRequest{
		Kind: dispatch.KindJobTemplate, Name: name, Organization: "Default", EventUUID: "0b0e",
		ExtraVars: map[string]any{"pv_name": "pv1", "ansible_eda": map[string]any{"rule": "r"}},
	}
}

func countPrefix(reqs []string, method, sub string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, method+" ") && strings.Contains(r, sub) {
			n++
		}
	}
	return n
}

func TestLaunchAndPollBothPrefixes(t *testing.T) {
	for _, tc := range []struct {
		name, path, prefix string
	}{
		{"controller", "", "/api/v2/"},
		{"gateway", "/api/controller/", "/api/controller/v2/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := aaptest.New("tok")
			defer fake.Close()
			fake.PageSize = 1 // the template is on page 2, after a project of the same name
			fake.AddTemplate(aaptest.Template{Name: "EDA - Sync NFS PV to DR", Organization: "Other"})
			fake.AddTemplate(aaptest.Template{Name: "EDA - Sync NFS PV to DR", AskVariablesOnLaunch: true, Artifacts: map[string]any{"synced": "pv1"}})
			c := client(t, fake.URL+tc.path, nil)
			if c.Prefix() != tc.prefix {
				t.Fatalf("prefix %s", c.Prefix())
			}
			res, err := c.Run(context.Background(), jtReq("EDA - Sync NFS PV to DR"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != "successful" || res.Artifacts["synced"] != "pv1" || res.Finished.Before(res.Started) || res.Started.IsZero() {
				t.Fatalf("result %+v", res)
			}
			jobs := fake.Jobs()
			if len(jobs) != 1 || jobs[0].Template.Organization != "Default" || jobs[0].ExtraVars["pv_name"] != "pv1" || jobs[0].ExtraVars["ansible_eda"] == nil {
				t.Fatalf("jobs %+v", jobs)
			}
			if !strings.HasSuffix(res.URL, fmt.Sprintf("/#/jobs/%d/details", jobs[0].ID)) || res.ControllerJobID != jobs[0].ID {
				t.Errorf("url %s id %d", res.URL, res.ControllerJobID)
			}
			for _, r := range fake.Requests() {
				if !strings.Contains(r, tc.prefix) {
					t.Errorf("request outside %s: %s", tc.prefix, r)
				}
			}
			// pending -> waiting -> running -> successful: three reads.
			if n := countPrefix(fake.Requests(), "GET", "/jobs/"); n < 3 {
				t.Errorf("job read %d times", n)
			}
		})
	}
}

func TestUnpromptedFieldsAreIgnoredOnJobTemplates(t *testing.T) {
	fake := aaptest.New("tok")
	defer fake.Close()
	fake.AddTemplate(aaptest.Template{Name: "T"}) // prompts for nothing
	c := client(t, fake.URL, nil)
	res, err := c.Run(context.Background(), jtReq("T"))
	if err != nil || res.Status != "successful" {
		t.Fatal(res, err)
	}
	j := fake.Jobs()[0]
	if len(j.ExtraVars) != 0 || j.Limit != "" {
		t.Fatalf("unprompted values reached the job: %+v", j)
	}
}

func TestWorkflowTemplates(t *testing.T) {
	fake := aaptest.New("tok")
	defer fake.Close()
	fake.AddTemplate(aaptest.Template{Name: "One-Click Disaster Recovery Failover", Workflow: true, AskVariablesOnLaunch: true})
	fake.AddTemplate(aaptest.Template{Name: "Strict", Workflow: true})
	c := client(t, fake.URL, nil)
	req := jtReq("One-Click Disaster Recovery Failover")
	req.Kind = dispatch.KindWorkflowTemplate
	res, err := c.Run(context.Background(), req)
	if err != nil || res.Status != "successful" || !strings.Contains(res.URL, "/#/jobs/workflow/") {
		t.Fatalf("%+v %v", res, err)
	}
	// limit was not sent (the template does not prompt for it), so no 400.
	req.Name = "Strict"
	_, err = c.Run(context.Background(), req)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Body, "Variables ansible_eda, pv_name are not allowed on launch") {
		t.Fatalf("strict workflow: %v", err)
	}
}

func TestSurveyErrorIsNotRetried(t *testing.T) {
	fake := aaptest.New("tok")
	defer fake.Close()
	fake.AddTemplate(aaptest.Template{Name: "S", Survey: []aaptest.SurveyQuestion{{Variable: "backup_name", Type: "text", Required: true}}})
	c := client(t, fake.URL, nil)
	_, err := c.Run(context.Background(), jtReq("S"))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Body, `'backup_name' value missing`) {
		t.Fatalf("err %v", err)
	}
	if n := countPrefix(fake.Requests(), "POST", "/launch/"); n != 1 {
		t.Fatalf("launch POSTed %d times", n)
	}
	// With the answer the same template launches.
	req := jtReq("S")
	req.ExtraVars["backup_name"] = "nightly"
	if res, err := c.Run(context.Background(), req); err != nil || res.Status != "successful" {
		t.Fatal(res, err)
	}
}

func TestAuth(t *testing.T) {
	fake := aaptest.New("tok")
	defer fake.Close()
	fake.Username, fake.Password = "admin", "pw"
	fake.ReadOnlyToken = "ro"
	fake.AddTemplate(aaptest.Template{Name: "T"})
	cases := []struct {
		name   string
		mod    func(*Config)
		status int
	}{
		{"basic", func(c *Config) { c.Token, c.Username, c.Password = "", "admin", "pw" }, 0},
		{"bad token", func(c *Config) { c.Token = "nope" }, 401},
		{"bad password", func(c *Config) { c.Token, c.Username, c.Password = "", "admin", "x" }, 401},
		{"read-only token", func(c *Config) { c.Token = "ro" }, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client(t, fake.URL, tc.mod).Run(context.Background(), jtReq("T"))
			var ae *APIError
			if tc.status == 0 && err != nil || tc.status != 0 && (!errors.As(err, &ae) || ae.Status != tc.status) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	fake := aaptest.New("tok")
	defer fake.Close()
	fake.AddTemplate(aaptest.Template{Name: "T", Organization: "Other"})
	_, err := client(t, fake.URL, nil).Run(context.Background(), jtReq("T"))
	if !errors.Is(err, ErrTemplateNotFound) {
		t.Fatal(err)
	}
}

func TestLaunchRetries(t *testing.T) {
	cases := []struct {
		name     string
		labels   bool
		faults   []aaptest.Fault
		wantErr  int // HTTP status of the final error, 0 for success
		jobs     int
		launches int
	}{
		{"502 and 503 before creation are retried", false, []aaptest.Fault{{Method: "POST", PathContains: "launch", Status: 502}, {Method: "POST", PathContains: "launch", Status: 503}}, 0, 1, 3},
		{"429 is retried", false, []aaptest.Fault{{Method: "POST", PathContains: "launch", Status: 429}}, 0, 1, 2},
		{"500 is not retried", false, []aaptest.Fault{{Method: "POST", PathContains: "launch", Status: 500}}, 500, 0, 1},
		{"504 is not retried", false, []aaptest.Fault{{Method: "POST", PathContains: "launch", Status: 504}}, 504, 0, 1},
		{"502 after creation without labels duplicates (the documented risk)", false, []aaptest.Fault{{Method: "POST", PathContains: "launch", Status: 502, AfterCreate: true}}, 0, 2, 2},
		{"502 after creation with the event label finds the job", true, []aaptest.Fault{{Method: "POST", PathContains: "launch", Status: 502, AfterCreate: true}}, 0, 1, 1},
		{"GET 503 while polling is retried", false, []aaptest.Fault{{Method: "GET", PathContains: "jobs/", Status: 503, Times: 2}}, 0, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := aaptest.New("tok")
			defer fake.Close()
			fake.AddTemplate(aaptest.Template{Name: "T", AskVariablesOnLaunch: true, AskLabelsOnLaunch: tc.labels})
			for _, f := range tc.faults {
				fake.Inject(f)
			}
			c := client(t, fake.URL, nil)
			res, err := c.Run(context.Background(), jtReq("T"))
			var ae *APIError
			switch {
			case tc.wantErr == 0 && (err != nil || res.Status != "successful"):
				t.Fatalf("%+v %v", res, err)
			case tc.wantErr != 0 && (!errors.As(err, &ae) || ae.Status != tc.wantErr):
				t.Fatalf("err %v", err)
			}
			if n := len(fake.Jobs()); n != tc.jobs {
				t.Errorf("jobs %d, want %d", n, tc.jobs)
			}
			if n := countPrefix(fake.Requests(), "POST", "/launch/"); n != tc.launches {
				t.Errorf("launch POSTs %d, want %d", n, tc.launches)
			}
			if tc.wantErr != 0 {
				if got := testutil.ToFloat64(c.errs.WithLabelValues(fmt.Sprint(tc.wantErr))); got != 1 {
					t.Errorf("api errors{%d} = %v", tc.wantErr, got)
				}
			}
		})
	}
}

// After a restart the same event's job is found by its label and followed,
// not launched again; labels are created once.
func TestEventLabelFindsJobAfterRestart(t *testing.T) {
	fake := aaptest.New("tok")
	defer fake.Close()
	fake.AddTemplate(aaptest.Template{Name: "T", AskVariablesOnLaunch: true, AskLabelsOnLaunch: true, Hold: true})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = client(t, fake.URL, nil).Run(ctx, jtReq("T")) })
	for deadline := time.Now().Add(20 * time.Second); len(fake.Jobs()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			t.Fatal("no job launched")
		}
	}
	cancel() // the receiver died while the job ran
	wg.Wait()
	j := fake.Jobs()[0]
	if !strings.Contains(strings.Join(j.Labels, ","), "eda-event-uuid-0b0e") || !strings.Contains(strings.Join(j.Labels, ","), DefaultLabel) {
		t.Fatalf("labels %v", j.Labels)
	}
	fake.Release()
	res, err := client(t, fake.URL, nil).Run(context.Background(), jtReq("T"))
	if err != nil || res.Status != "successful" || res.ControllerJobID != j.ID {
		t.Fatalf("%+v %v", res, err)
	}
	if n := len(fake.Jobs()); n != 1 {
		t.Fatalf("launched %d jobs", n)
	}
	other := jtReq("T")
	other.EventUUID = "other"
	if _, err := client(t, fake.URL, nil).Run(context.Background(), other); err != nil || len(fake.Jobs()) != 2 {
		t.Fatalf("a different event did not launch: %v", err)
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{"EDA_CONTROLLER_URL": "https://gw/api/controller/", "EDA_CONTROLLER_TOKEN": "t",
		"EDA_CONTROLLER_SSL_VERIFY": "/etc/ca.pem", "EDA_JOB_TEMPLATE_REFRESH_DELAY": "0.5"}
	var c Config
	c.ApplyEnv(func(k string) string { return env[k] })
	if c.URL != env["EDA_CONTROLLER_URL"] || c.Token != "t" || c.CAFile != "/etc/ca.pem" || c.PollInterval != 500*time.Millisecond {
		t.Fatalf("%+v", c)
	}
	c = Config{URL: "https://explicit", Token: "x"}
	env["EDA_CONTROLLER_SSL_VERIFY"] = "no"
	c.ApplyEnv(func(k string) string { return env[k] })
	if c.URL != "https://explicit" || c.Token != "x" || !c.InsecureSkipVerify {
		t.Fatalf("%+v", c)
	}
}

// The dispatcher drives the client: the first job fails, the action's
// retries relaunch it, and set_facts hands the artifacts to the engine.
func TestDispatcherWithController(t *testing.T) {
	fake := aaptest.New("tok")
	defer fake.Close()
	fake.AddTemplate(aaptest.Template{Name: "EDA - Sync NFS PV to DR", AskVariablesOnLaunch: true, AskLabelsOnLaunch: true, FailFirst: 1, Artifacts: map[string]any{"synced_pv": "pv1"}})
	in, err := inbox.Open(inbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	eng := &factEngine{}
	d, err := dispatch.New(dispatch.Config{Engine: eng, Store: in, Templates: client(t, fake.URL, nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	r, err := in.Append(ctx, &inbox.Item{UUID: "ev-uuid", Payload: []byte(`{"resource":{"kind":"PersistentVolume","metadata":{"name":"pv1"}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for in.Depth() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	e, _ := in.Get(r.Seq)
	if e.State != inbox.StateDone {
		t.Fatalf("entry %+v", e)
	}
	jobs := fake.Jobs()
	if len(jobs) != 2 || jobs[0].Status != "failed" || jobs[1].Status != "successful" {
		t.Fatalf("controller jobs %+v", jobs)
	}
	if jobs[1].ExtraVars["ansible_eda"].(map[string]any)["event"].(map[string]any)["meta"].(map[string]any)["uuid"] != "ev-uuid" {
		t.Errorf("ansible_eda.event %v", jobs[1].ExtraVars["ansible_eda"])
	}
	recs, _ := in.RecentJobs(5)
	if len(recs) != 1 || recs[0].Attempts != 2 || recs[0].ControllerJobID != jobs[1].ID || recs[0].Status != "successful" {
		t.Fatalf("job records %+v", recs)
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if len(eng.facts) != 1 || eng.facts[0]["synced_pv"] != "pv1" {
		t.Fatalf("facts %v", eng.facts)
	}
}

type factEngine struct {
	mu    sync.Mutex
	facts []map[string]any
}

func (e *factEngine) Process(ev map[string]any) ([]dispatch.Fired, error) {
	return []dispatch.Fired{{Ruleset: "rs", Rule: "sync", Action: "run_job_template",
		Args:           map[string]any{"name": "EDA - Sync NFS PV to DR", "organization": "Default", "retries": 1, "set_facts": true},
		MatchingEvents: map[string]any{"m": ev}}}, nil
}

func (e *factEngine) PostEvent(string, map[string]any) ([]dispatch.Fired, error) { return nil, nil }

func (e *factEngine) SetFact(_ string, f map[string]any) ([]dispatch.Fired, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.facts = append(e.facts, f)
	return nil, nil
}

func TestCABundle(t *testing.T) {
	fake := aaptest.NewTLS("tok")
	defer fake.Close()
	fake.AddTemplate(aaptest.Template{Name: "T"})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fake.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := client(t, fake.URL, func(c *Config) { c.CAFile = ca }).Run(context.Background(), jtReq("T")); err != nil || res.Status != "successful" {
		t.Fatalf("with the CA bundle: %+v %v", res, err)
	}
	if _, err := client(t, fake.URL, func(c *Config) { c.RetryMax = 1 }).Run(context.Background(), jtReq("T")); err == nil {
		t.Fatal("an unknown CA was trusted")
	}
	if _, err := New(Config{URL: fake.URL, Token: "x", CAFile: "/nonexistent"}); err == nil {
		t.Fatal("missing CA file accepted")
	}
}

func TestResolveStaysOnOrigin(t *testing.T) {
	c := client(t, "https://ctl.example/api/controller/", nil)
	cases := []struct {
		ref, want string // want "" when refused
	}{
		{"/api/controller/v2/jobs/1/?a=b", "https://ctl.example/api/controller/v2/jobs/1/?a=b"},
		{"https://ctl.example/api/controller/v2/jobs/1/", "https://ctl.example/api/controller/v2/jobs/1/"},
		{"https://CTL.example:443/x/", "https://CTL.example:443/x/"},
		{"https://admin:pw@ctl.example/x/", "https://ctl.example/x/"},
		{"http://ctl.example/x/", ""},
		{"https://ctl.example:8443/x/", ""},
		{"https://evil.example/x/", ""},
		{"//evil.example/x/", ""},
		{"https://ctl.example.evil.example/x/", ""},
	}
	for _, tc := range cases {
		got, err := c.resolve(tc.ref)
		switch {
		case tc.want == "" && !errors.Is(err, ErrForeignOrigin):
			t.Errorf("%s: got %q, %v; want refused", tc.ref, got, err)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("%s: got %q, %v; want %s", tc.ref, got, err, tc.want)
		}
	}
}

// A link or redirect to another origin is refused with an error naming its
// host; the other server never sees a request, so never the token.
func TestForeignLinksAreRefused(t *testing.T) {
	var seen atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		t.Errorf("other origin got %s %s (Authorization %q)", r.Method, r.URL, r.Header.Get("Authorization"))
	}))
	defer other.Close()
	ctl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v2/unified_job_templates/":
			_, _ = fmt.Fprintf(w, `{"count":2,"next":%q,"results":[]}`, other.URL+"/api/v2/unified_job_templates/?page=2")
		case "/api/v2/config/":
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer ctl.Close()
	ctx := context.Background()
	tmpl := &Template{Type: "job_template", Name: "T"}
	tmpl.Related.Launch = other.URL + "/api/v2/job_templates/1/launch/"
	cases := []struct {
		name string
		call func(*Client) error
	}{
		{"next page", func(c *Client) error { _, err := c.Lookup(ctx, "job_template", "T", "Default"); return err }},
		{"launch link", func(c *Client) error { _, err := c.Launch(ctx, tmpl, jtReq("T")); return err }},
		{"job URL", func(c *Client) error {
			_, err := c.Wait(ctx, &Job{ID: 1, Status: "pending", URL: other.URL + "/api/v2/jobs/1/"})
			return err
		}},
		{"redirect", func(c *Client) error { _, err := c.Ping(ctx); return err }},
	}
	host := strings.TrimPrefix(other.URL, "http://")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := client(t, ctl.URL, func(c *Config) { c.Token = "s3cret-token" })
			err := tc.call(c)
			if !errors.Is(err, ErrForeignOrigin) || !strings.Contains(err.Error(), host) || strings.Contains(err.Error(), "s3cret-token") {
				t.Fatalf("err %v; want ErrForeignOrigin naming %s, without the token", err, host)
			}
		})
	}
	if n := seen.Load(); n != 0 {
		t.Fatalf("the other origin got %d requests", n)
	}
}
