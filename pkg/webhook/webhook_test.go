// Tests of the webhook handler against ansible.eda.webhook's behaviour.

package webhook

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/signature"
)

func newServer(t *testing.T, cfg Config) (*httptest.Server, *inbox.Inbox, *Handler) {
	t.Helper()
	in, err := inbox.Open(inbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close() })
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	h, err := New(cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	h.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, in, h
}

func post(t *testing.T, url string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestStatusCodes(t *testing.T) {
	srv, in, h := newServer(t, Config{Token: "s3cret", MaxBodyBytes: 1 << 20})
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	big := bytes.Repeat([]byte("x"), 1<<20+1)
	exact := append(append([]byte(`"`), bytes.Repeat([]byte("y"), 1<<20-2)...), '"')
	cases := []struct {
		name   string
		path   string
		body   []byte
		hdr    map[string]string
		status int
		text   string
		reason string
	}{
		{"accepted object, body is the endpoint", "/hooks/pv", []byte(`{"a":1}`), auth, 200, "hooks/pv", ""},
		{"accepted on /", "/", []byte(`{"a":1}`), auth, 200, "", ""},
		{"any JSON value is accepted", "/endpoint", []byte(`[1,2]`), auth, 200, "endpoint", ""},
		{"JSON null is accepted", "/endpoint", []byte(`null`), auth, 200, "endpoint", ""},
		{"exactly the limit is accepted", "/endpoint", exact, auth, 200, "endpoint", ""},
		{"no Authorization", "/endpoint", []byte(`{}`), nil, 401, "Missing authorization token", ReasonMissingToken},
		{"wrong token", "/endpoint", []byte(`{}`), map[string]string{"Authorization": "Bearer nope"}, 401, "Invalid authorization token", ReasonBadToken},
		{"token prefix only", "/endpoint", []byte(`{}`), map[string]string{"Authorization": "Bearer s3cre"}, 401, "Invalid authorization token", ReasonBadToken},
		{"two spaces", "/endpoint", []byte(`{}`), map[string]string{"Authorization": "Bearer  s3cret"}, 401, "Invalid authorization token", ReasonBadToken},
		{"basic scheme", "/endpoint", []byte(`{}`), map[string]string{"Authorization": "Basic s3cret"}, 401, "Only Bearer type is accepted", ReasonBadToken},
		{"lower-case bearer", "/endpoint", []byte(`{}`), map[string]string{"Authorization": "bearer s3cret"}, 401, "Only Bearer type is accepted", ReasonBadToken},
		{"invalid JSON", "/endpoint", []byte(`{"a":`), auth, 400, "Invalid JSON payload", ReasonInvalidJSON},
		{"empty body", "/endpoint", nil, auth, 400, "Invalid JSON payload", ReasonInvalidJSON},
		{"over the limit", "/endpoint", big, auth, 413, "Request Entity Too Large", ReasonTooLarge},
		{"nesting at the depth limit", "/endpoint", nested("[", "]", MaxJSONDepth), auth, 200, "endpoint", ""},
		{"arrays one level too deep", "/endpoint", nested("[", "]", MaxJSONDepth+1), auth, 400, tooDeep, ReasonTooDeep},
		{"objects one level too deep", "/endpoint", nested(`{"a":`, "}", MaxJSONDepth+1), auth, 400, tooDeep, ReasonTooDeep},
		{"a limit-sized body of [ is too deep", "/endpoint", bytes.Repeat([]byte("["), 1<<20), auth, 400, tooDeep, ReasonTooDeep},
		{"brackets in strings do not nest", "/endpoint", []byte(`{"s":"\"` + strings.Repeat("[{", 200) + `"}`), auth, 200, "endpoint", ""},
		{"invalid UTF-8 in a string", "/endpoint", []byte("{\"a\":\"\xff\"}"), auth, 400, "Invalid UTF-8 in payload", ReasonInvalidUTF8},
		{"overlong UTF-8 encoding", "/endpoint", []byte("{\"a\":\"\xc0\xaf\"}"), auth, 400, "Invalid UTF-8 in payload", ReasonInvalidUTF8},
		{"UTF-16 surrogate as UTF-8", "/endpoint", []byte("[\"\xed\xa0\x80\"]"), auth, 400, "Invalid UTF-8 in payload", ReasonInvalidUTF8},
		{"multi-byte UTF-8 is accepted", "/endpoint", []byte(`{"a":"é ✓ 😀"}`), auth, 200, "endpoint", ""},
		{"number beyond float64", "/endpoint", []byte(`{"size":1e400}`), auth, 400, "JSON number out of range (beyond a 64-bit float)", ReasonNumberRange},
		{"negative number beyond float64", "/endpoint", []byte(`[-2e308]`), auth, 400, "JSON number out of range (beyond a 64-bit float)", ReasonNumberRange},
		{"large but finite numbers and digits in strings", "/endpoint", []byte(`{"a":1.7e308,"b":-5e-324,"c":"1e400","d":123456789012345678901234567890}`), auth, 200, "endpoint", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before float64
			if c.reason != "" {
				before = testutil.ToFloat64(h.rejected.WithLabelValues(c.reason))
			}
			depth := in.Depth()
			status, text := post(t, srv.URL+c.path, c.body, c.hdr)
			if status != c.status || text != c.text {
				t.Fatalf("got %d %q, want %d %q", status, text, c.status, c.text)
			}
			if c.reason != "" {
				if got := testutil.ToFloat64(h.rejected.WithLabelValues(c.reason)); got != before+1 {
					t.Errorf("rejected{%s} = %v, want %v", c.reason, got, before+1)
				}
				if in.Depth() != depth {
					t.Errorf("a rejected request was stored")
				}
			} else if in.Depth() != depth+1 {
				t.Errorf("an accepted request was not stored (depth %d -> %d)", depth, in.Depth())
			}
		})
	}
}

// tooDeep is the 400 text for a body nested deeper than MaxJSONDepth.
var tooDeep = "JSON nesting too deep (limit " + strconv.Itoa(MaxJSONDepth) + ")"

// nested returns n levels of open/close around 1.
func nested(open, closing string, n int) []byte {
	return []byte(strings.Repeat(open, n) + "1" + strings.Repeat(closing, n))
}

func TestOtherMethodsAre405(t *testing.T) {
	srv, _, _ := newServer(t, Config{})
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		req, _ := http.NewRequest(m, srv.URL+"/endpoint", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s /endpoint = %d, want 405", m, resp.StatusCode)
		}
	}
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz = %d", resp.StatusCode)
	}
}

// A client that streams a large body without Content-Length must see the 413,
// not a connection reset.
func TestTooLargeIsACleanResponse(t *testing.T) {
	srv, _, _ := newServer(t, Config{MaxBodyBytes: 64 << 10})
	for _, chunked := range []bool{false, true} {
		body := bytes.Repeat([]byte("z"), 200<<10)
		var rd io.Reader = bytes.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd) // hides the length: chunked encoding
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/endpoint", rd)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("chunked=%v: %v", chunked, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked=%v: status %d", chunked, resp.StatusCode)
		}
	}
	// The same over a raw connection: send everything, then read the status line.
	addr := strings.TrimPrefix(srv.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	body := bytes.Repeat([]byte("q"), 100<<10)
	if _, err := io.WriteString(conn, "POST /endpoint HTTP/1.1\r\nHost: x\r\nContent-Length: "+
		itoa(len(body))+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body); err != nil {
		t.Fatalf("server reset the connection while the client was sending: %v", err)
	}
	line := make([]byte, 12)
	if _, err := io.ReadFull(conn, line); err != nil {
		t.Fatal(err)
	}
	if string(line) != "HTTP/1.1 413" {
		t.Fatalf("status line %q", line)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestStoredEventShapeAndDedupe(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)
	srv, in, h := newServer(t, Config{Now: func() time.Time { return now }, NewUUID: func() string { return "fixed-uuid" }})
	ev := `{"id":"ev-1","type":"MODIFIED","kind":"PersistentVolume","cluster":"primary","initial":false,` +
		`"resource":{"metadata":{"name":"pv1","uid":"u1","resourceVersion":"7"}}}`
	status, _ := post(t, srv.URL+"/endpoint?x=1", []byte(ev), map[string]string{"X-Custom": "v", "X-Request-Id": "r-1"})
	if status != 200 {
		t.Fatal(status)
	}
	// The same id again and the same state as an initial event are acknowledged, not stored.
	status, _ = post(t, srv.URL+"/endpoint", []byte(ev), nil)
	initial := strings.Replace(strings.Replace(ev, `"ev-1"`, `"ev-2"`, 1), `"initial":false`, `"initial":true`, 1)
	status2, _ := post(t, srv.URL+"/endpoint", []byte(initial), nil)
	if status != 200 || status2 != 200 {
		t.Fatalf("duplicates answered %d, %d", status, status2)
	}
	if in.Depth() != 1 {
		t.Fatalf("depth %d, want 1", in.Depth())
	}
	for _, r := range []string{"duplicate-id", "initial-seen"} {
		if got := testutil.ToFloat64(h.dropped.WithLabelValues(r)); got != 1 {
			t.Errorf("dropped{%s} = %v", r, got)
		}
	}
	if err := in.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, err := in.Pending(0, 10)
	if err != nil || len(p) != 1 {
		t.Fatal(p, err)
	}
	e := p[0]
	if e.Endpoint != "endpoint" || e.UUID != "fixed-uuid" || !e.ReceivedAt.Equal(now) || e.ID != "ev-1" {
		t.Errorf("entry meta %+v", e)
	}
	if string(e.Payload) != ev {
		t.Errorf("payload %s", e.Payload)
	}
	if _, custom := e.Headers["X-Custom"]; custom || e.Headers["X-Request-Id"] != "r-1" || e.Headers["Host"] == "" {
		t.Errorf("headers %v", e.Headers)
	}
}

func TestAuthorizationNeverStored(t *testing.T) {
	srv, in, _ := newServer(t, Config{Token: "tok"})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/e", strings.NewReader(`{}`))
	req.Header["authorization"] = []string{"Bearer tok"} // non-canonical case, as HTTP/2 would send it
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_ = in.Flush(context.Background())
	p, _ := in.Pending(0, 1)
	if resp.StatusCode != 200 || len(p) != 1 {
		t.Fatal(resp.StatusCode)
	}
	for k, v := range p[0].Headers {
		if strings.Contains(v, "tok") {
			t.Errorf("header %s carries the token", k)
		}
	}
}

// The vectors of ansible.eda's webhook tests: secret "secret", body
// {"src_path": "https://example.com/payload"}.
func TestHMACVectors(t *testing.T) {
	body := []byte(`{"src_path": "https://example.com/payload"}`)
	const hexSig = "9ec8272937a36a4b4427d4f9ab7b0425856c5ef5d7e1b496f864aaf99c1910ca"
	const b64Sig = "nsgnKTejaktEJ9T5q3sEJYVsXvXX4bSW+GSq+ZwZEMo="
	cases := []struct {
		name   string
		cfg    signature.Config
		header string
		value  string
		status int
	}{
		{"hex", signature.Config{Secret: []byte("secret")}, "X-Hub-Signature-256", hexSig, 200},
		{"hex with prefix", signature.Config{Secret: []byte("secret"), Prefix: "sha256="}, "X-Hub-Signature-256", "sha256=" + hexSig, 200},
		{"base64, custom header", signature.Config{Secret: []byte("secret"), Encoding: "base64", Header: "X-Sig"}, "X-Sig", b64Sig, 200},
		{"wrong digest", signature.Config{Secret: []byte("secret")}, "X-Hub-Signature-256", strings.Repeat("0", 64), 401},
		{"wrong secret", signature.Config{Secret: []byte("other")}, "X-Hub-Signature-256", hexSig, 401},
		{"hex sent where base64 is configured", signature.Config{Secret: []byte("secret"), Encoding: "base64"}, "X-Hub-Signature-256", hexSig, 401},
		{"missing header", signature.Config{Secret: []byte("secret")}, "X-Other", hexSig, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, in, _ := newServer(t, Config{Token: "tok", Verifier: c.cfg, SignatureHeader: c.cfg.HeaderName()})
			status, text := post(t, srv.URL+"/endpoint", body, map[string]string{"Authorization": "Bearer tok", c.header: c.value})
			if status != c.status {
				t.Fatalf("status %d %q, want %d", status, text, c.status)
			}
			if want := map[int]string{400: "Signature header not found", 401: "HMAC verification failed"}[c.status]; want != "" && text != want {
				t.Errorf("text %q, want %q", text, want)
			}
			if (in.Depth() == 1) != (c.status == 200) {
				t.Errorf("stored = %v", in.Depth() == 1)
			}
		})
	}
	// The token is checked before the signature (EDA's middleware order).
	srv, _, _ := newServer(t, Config{Token: "tok", Verifier: signature.Config{Secret: []byte("secret")}, SignatureHeader: signature.DefaultHeader})
	if status, _ := post(t, srv.URL+"/e", body, nil); status != 401 {
		t.Errorf("no token and no signature: %d, want 401", status)
	}
}
