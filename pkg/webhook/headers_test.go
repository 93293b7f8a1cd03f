// Tests of the kept headers.

package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// Credential headers seen in front of webhooks (clients, oauth-proxy,
// oauth2-proxy, forges). None may reach meta.headers.
var credentialHeaders = []string{
	"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "X-Auth-Token",
	"X-Forwarded-Access-Token", "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Access-Token",
	"X-Hub-Signature-256", "X-Gitlab-Token",
}

func TestEventHeaders(t *testing.T) {
	long := strings.Repeat("a", 1<<20)
	// "é" is two bytes; at an odd offset the cut would fall inside one.
	accents := "x" + strings.Repeat("é", maxHeaderValueBytes)
	cases := []struct {
		name   string
		header string
		value  string
		want   string // "" = not stored
	}{
		{"Content-Type kept", "Content-Type", "application/json", "application/json"},
		{"User-Agent kept", "User-Agent", "ocpv-dr-forwarder/1", "ocpv-dr-forwarder/1"},
		{"X-Request-Id kept", "X-Request-Id", "abc", "abc"},
		{"X-Github-Delivery kept", "X-Github-Delivery", "72d3162e", "72d3162e"},
		{"non-canonical name is canonicalised", "x-forwarded-for", "10.0.0.1", "10.0.0.1"},
		{"unknown header dropped", "X-Custom", "v", ""},
		{"1 MiB header truncated", "User-Agent", long, long[:maxHeaderValueBytes]},
		{"truncated at a UTF-8 boundary", "User-Agent", accents, accents[:maxHeaderValueBytes-1]},
	}
	for _, h := range credentialHeaders {
		cases = append(cases, struct{ name, header, value, want string }{"credential " + h + " dropped", h, "secret", ""})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/e", nil)
			r.Header.Add(c.header, c.value)
			got := eventHeaders(r)
			name := http.CanonicalHeaderKey(c.header)
			if v, ok := got[name]; c.want == "" && ok {
				t.Fatalf("%s stored: %.40q", name, v)
			} else if c.want != "" && v != c.want {
				t.Fatalf("%s = %.40q (%d bytes), want %.40q (%d bytes)", name, v, len(v), c.want, len(c.want))
			}
			for k, v := range got {
				if len(v) > maxHeaderValueBytes || !utf8.ValidString(v) {
					t.Errorf("%s: %d bytes, valid UTF-8 %v", k, len(v), utf8.ValidString(v))
				}
			}
		})
	}
}

// Every allowed header, repeated, plus many others: the count stays bounded.
func TestEventHeadersCountBounded(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/e", nil)
	for _, name := range storedHeaders {
		r.Header.Add(name, "first")
		r.Header.Add(name, "second")
	}
	for i := range 500 {
		r.Header.Add("X-Extra-"+itoa(i), "v")
	}
	got := eventHeaders(r)
	if len(got) != maxStoredHeaders+1 { // + Host
		t.Fatalf("%d headers stored, want %d: %v", len(got), maxStoredHeaders+1, got)
	}
	for k, v := range got {
		if k != "Host" && v != "first" {
			t.Errorf("%s = %q, want the first value", k, v)
		}
	}
}

// Through the server and the inbox: what a job would receive.
func TestStoredHeadersThroughInbox(t *testing.T) {
	srv, in, _ := newServer(t, Config{Token: "tok"})
	hdr := map[string]string{"Authorization": "Bearer tok", "User-Agent": strings.Repeat("u", 64<<10)}
	for _, h := range credentialHeaders[1:] {
		hdr[h] = "secret-" + h
	}
	if status, text := post(t, srv.URL+"/e", []byte(`{}`), hdr); status != 200 {
		t.Fatal(status, text)
	}
	if err := in.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, err := in.Pending(0, 1)
	if err != nil || len(p) != 1 {
		t.Fatal(p, err)
	}
	for k, v := range p[0].Headers {
		if strings.Contains(v, "secret") || strings.Contains(v, "tok") {
			t.Errorf("header %s carries a credential", k)
		}
	}
	if ua := p[0].Headers["User-Agent"]; ua != strings.Repeat("u", maxHeaderValueBytes) {
		t.Errorf("User-Agent stored with %d bytes, want %d", len(ua), maxHeaderValueBytes)
	}
}
