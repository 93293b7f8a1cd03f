package receiver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
)

// recordEngine fires the runner testdata's "Record" template for every
// object event and nothing for others.
type recordEngine struct{ out string }

func (e recordEngine) Process(ev map[string]any) ([]dispatch.Fired, error) {
	p, _ := ev["payload"].(map[string]any)
	if p["name"] == nil {
		return nil, nil
	}
	return []dispatch.Fired{{Ruleset: "rs", Rule: "record", Action: "run_job_template",
		Args:           map[string]any{"name": "Record", "organization": "Default", "job_args": map[string]any{"extra_vars": map[string]any{"out_file": e.out, "greeting": "hi"}}},
		MatchingEvents: map[string]any{"m": ev}}}, nil
}
func (recordEngine) PostEvent(string, map[string]any) ([]dispatch.Fired, error) { return nil, nil }
func (recordEngine) SetFact(string, map[string]any) ([]dispatch.Fired, error)   { return nil, nil }

// testToken is a webhook token the token policy accepts.
const testToken = "receiver-test-webhook-token-0123456789abcdef"

type running struct {
	addr   string
	health string // with cfg.HealthListen
	cancel context.CancelFunc
	done   chan error
}

func serve(t *testing.T, cfg Config, eng dispatch.Engine) *running {
	t.Helper()
	return serveLog(t, cfg, eng, zap.NewNop())
}

func serveLog(t *testing.T, cfg Config, eng dispatch.Engine, log *zap.Logger) *running {
	t.Helper()
	addrc := make(chan [2]string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- Run(ctx, cfg, Deps{Logger: log, Registry: prometheus.NewRegistry(),
			NewEngine: func(Config, *zap.Logger) (dispatch.Engine, error) { return eng, nil },
			OnListen:  func(a, h string) { addrc <- [2]string{a, h} }})
	}()
	select {
	case a := <-addrc:
		r.addr, r.health = a[0], a[1]
	case err := <-r.done:
		t.Fatalf("receiver stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("receiver did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

func baseConfig(t *testing.T) Config {
	dir := t.TempDir()
	rb := filepath.Join(dir, "rulebook.yml")
	if err := os.WriteFile(rb, []byte("---\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Rulebook = rb
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.WebhookToken = testToken
	cfg.JobTemplates = "../runner/testdata/catalog.yml"
	cfg.Inventory = "../runner/testdata/inventory.ini"
	cfg.AnsiblePlaybook = "/usr/bin/ansible-playbook"
	return cfg
}

func do(t *testing.T, c *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// An event POSTed to the receiver runs the mapped playbook with the real
// ansible-playbook, and the operator API shows the event, its rule and its job.
func TestEventToLocalJob(t *testing.T) {
	cfg := baseConfig(t)
	out := filepath.Join(t.TempDir(), "out.txt")
	r := serve(t, cfg, recordEngine{out: out})
	base := "http://" + r.addr
	c := http.DefaultClient
	if s, _ := do(t, c, "POST", base+"/endpoint", testToken, `{"id":"e1","name":"pv-one"}`); s != 200 {
		t.Fatal(s)
	}
	if s, _ := do(t, c, "POST", base+"/endpoint", testToken, `{"other":1}`); s != 200 {
		t.Fatal(s)
	}
	var view struct {
		Events  []EventView `json:"events"`
		Pending int         `json:"pending"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, body := do(t, c, "GET", base+"/api/v1/events?limit=10", testToken, "")
		if s != 200 {
			t.Fatal(s, body)
		}
		if err := json.Unmarshal([]byte(body), &view); err != nil {
			t.Fatal(err)
		}
		if view.Pending == 0 && len(view.Events) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not processed: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ev := view.Events[1] // oldest last
	if ev.ID != "e1" || ev.State != "done" || len(ev.Rules) != 1 || ev.Rules[0] != "rs/record" || len(ev.Jobs) != 1 || ev.Jobs[0].Status != "successful" {
		t.Fatalf("event view %+v", ev)
	}
	if view.Events[0].Reason != "no rule matched" || len(view.Events[0].Jobs) != 0 {
		t.Errorf("unmatched event view %+v", view.Events[0])
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "pv-one hi\n" {
		t.Fatalf("playbook output %q %v", got, err)
	}
	if _, err := os.Stat(ev.Jobs[0].LogPath); err != nil || !strings.HasPrefix(ev.Jobs[0].LogPath, filepath.Join(cfg.StateDir, "jobs")) {
		t.Errorf("job log %q: %v", ev.Jobs[0].LogPath, err)
	}
	s, body := do(t, c, "GET", base+"/api/v1/jobs?limit=5", testToken, "")
	if s != 200 || !strings.Contains(body, `"name": "Record"`) || !strings.Contains(body, `"duration_seconds"`) {
		t.Errorf("jobs %d %s", s, body)
	}
	checks := []struct {
		method, path, token string
		status              int
		contains            string
	}{
		{"GET", "/api/v1/events", "", 401, "Missing authorization token"},
		{"GET", "/api/v1/jobs", "bad", 401, "Invalid authorization token"},
		{"GET", "/api/v1/events?limit=-1", testToken, 400, "limit"},
		{"GET", "/healthz", "", 200, "ok"},
		{"GET", "/readyz", "", 200, "ok"},
		{"GET", "/metrics", "", 200, "receiver_events_received_total 2"},
		{"GET", "/endpoint", testToken, 405, ""},
		{"POST", "/endpoint", "", 401, ""},
	}
	for _, ch := range checks {
		s, body := do(t, c, ch.method, base+ch.path, ch.token, "{}")
		if s != ch.status || !strings.Contains(body, ch.contains) {
			t.Errorf("%s %s: %d %q", ch.method, ch.path, s, body)
		}
	}
}

func TestSeparateHealthListener(t *testing.T) {
	cfg := baseConfig(t)
	cfg.HealthListen = "127.0.0.1:0"
	healthc := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	main := make(chan string, 1)
	go func() {
		done <- Run(ctx, cfg, Deps{NewEngine: func(Config, *zap.Logger) (dispatch.Engine, error) { return recordEngine{}, nil },
			OnListen: func(a, h string) { main <- a; healthc <- h }})
	}()
	defer func() { cancel(); <-done }()
	a, h := <-main, <-healthc
	if s, _ := do(t, http.DefaultClient, "GET", "http://"+h+"/metrics", "", ""); s != 200 {
		t.Errorf("health listener /metrics %d", s)
	}
	if s, _ := do(t, http.DefaultClient, "GET", "http://"+a+"/metrics", "", ""); s != 405 {
		t.Errorf("webhook listener /metrics %d, want 405", s)
	}
}

func TestTLSWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	srvCert := leaf(t, ca, caKey, "server", filepath.Join(dir, "server"), x509.ExtKeyUsageServerAuth)
	cliCert := leaf(t, ca, caKey, "client", filepath.Join(dir, "client"), x509.ExtKeyUsageClientAuth)
	_ = srvCert
	cfg := baseConfig(t)
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.pem")
	r := serve(t, cfg, recordEngine{})
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cliCert}}}}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if s, _ := do(t, withCert, "POST", "https://"+r.addr+"/endpoint", testToken, `{}`); s != 200 {
		t.Fatalf("with client cert: %d", s)
	}
	req, _ := http.NewRequest("POST", "https://"+r.addr+"/endpoint", strings.NewReader("{}"))
	if resp, err := noCert.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("without a client certificate: %d", resp.StatusCode)
	}
	if resp, err := http.Post("http://"+r.addr+"/endpoint", "application/json", strings.NewReader("{}")); err == nil {
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP accepted")
		}
		resp.Body.Close()
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn, base string, usage x509.ExtKeyUsage) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, base+".crt", "CERTIFICATE", der)
	writePEM(t, base+".key", "EC PRIVATE KEY", kb)
	c, err := tls.LoadX509KeyPair(base+".crt", base+".key")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	good := baseConfig(t)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no rulebook", func(c *Config) { c.Rulebook = "" }, "--rulebook is required"},
		{"missing rulebook", func(c *Config) { c.Rulebook = "/nonexistent.yml" }, "--rulebook"},
		{"bad listen", func(c *Config) { c.Listen = "5000" }, "--listen"},
		{"cert without key", func(c *Config) { c.TLSCert = "x" }, "go together"},
		{"bad HMAC algorithm", func(c *Config) { c.HMACSecret, c.HMACAlgo = "s", "md5" }, "HMAC"},
		{"controller without credentials", func(c *Config) { c.ControllerURL = "https://aap" }, "needs a token"},
		{"zero jobs", func(c *Config) { c.MaxConcurrentJobs = 0 }, "--max-concurrent-jobs"},
		{"zero read timeout", func(c *Config) { c.ReadTimeout = 0 }, "--read-timeout"},
		{"zero connections", func(c *Config) { c.MaxConnections = 0 }, "--max-connections"},
		{"missing inventory", func(c *Config) { c.Inventory = "/nope" }, "--inventory"},
		{"bad namespace objective", func(c *Config) { c.RPONamespaces = []string{"vms=soon"} }, `--rpo-namespace: drstate: RPO "soon"`},
		{"VM objective without namespace", func(c *Config) { c.RPOVMs = []string{"db=15m"} }, "--rpo-vm: drstate: VM objective"},
	}
	for _, c := range cases {
		cfg := good
		c.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// vars.yml beside the rulebook is picked up when --vars is not given.
	vars := filepath.Join(filepath.Dir(good.Rulebook), "vars.yml")
	if err := os.WriteFile(vars, []byte("a: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good.ResolveVars()
	if good.Vars != vars {
		t.Errorf("vars %q", good.Vars)
	}
}
