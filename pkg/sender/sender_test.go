package sender

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/signature"
)

func newSender(t *testing.T, url string, mod func(*Config)) (*Sender, Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry(), "test")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{URL: url, Token: "tok", MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, zap.NewNop(), m)
	if err != nil {
		t.Fatal(err)
	}
	return s, m
}

func TestRetryClassification(t *testing.T) {
	tests := []struct {
		name       string
		statuses   []int  // answered in order, then 200
		wantReason string // "" for success
		wantCalls  int32
	}{
		{"200 first time", nil, "", 1},
		{"503 then 502 then 200", []int{503, 502}, "", 3},
		{"429 then 200", []int{429}, "", 2},
		{"401 then 200 (token rotation)", []int{401}, "", 2},
		{"403 then 200", []int{403}, "", 2},
		{"404 then 405 then 200 (receiver rolling out)", []int{404, 405}, "", 3},
		{"408 then 409 then 200", []int{408, 409}, "", 3},
		{"400 is permanent", []int{400}, ReasonRejected, 1},
		{"422 is permanent", []int{422}, ReasonRejected, 1},
		{"413 is permanent and counted as too large", []int{413}, ReasonTooLarge, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1)) - 1
				if n < len(tt.statuses) {
					w.WriteHeader(tt.statuses[n])
					_, _ = io.WriteString(w, "nope")
					return
				}
				w.WriteHeader(200)
			}))
			defer srv.Close()
			s, m := newSender(t, srv.URL, nil)
			err := s.Send(context.Background(), []byte(`{}`))
			if (err != nil) != (tt.wantReason != "") {
				t.Fatalf("Send = %v, want reason %q", err, tt.wantReason)
			}
			var pe *PermanentError
			if tt.wantReason != "" && (!errors.As(err, &pe) || pe.Body != "nope" || pe.Reason != tt.wantReason) {
				t.Errorf("want a PermanentError carrying the response text and reason %s, got %#v", tt.wantReason, pe)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("calls = %d, want %d", got, tt.wantCalls)
			}
			if got := testutil.ToFloat64(m.Retries); got != float64(tt.wantCalls-1) {
				t.Errorf("retries metric = %v, want %d", got, tt.wantCalls-1)
			}
			assertUndeliverable(t, m, tt.wantReason)
		})
	}
}

// assertUndeliverable checks that exactly the given reason ("" for none) was
// counted once, and that every reason is exported.
func assertUndeliverable(t *testing.T, m Metrics, reason string) {
	t.Helper()
	if n := testutil.CollectAndCount(m.Undeliverable); n != 3 {
		t.Errorf("undeliverable series = %d, want 3 (zeros exported)", n)
	}
	for _, r := range []string{ReasonTooLarge, ReasonRedirect, ReasonRejected} {
		want := 0.0
		if r == reason {
			want = 1
		}
		if got := testutil.ToFloat64(m.Undeliverable.WithLabelValues(r)); got != want {
			t.Errorf("undeliverable{reason=%q} = %v, want %v", r, got, want)
		}
	}
}

// A redirect is never followed: the POST is not re-sent (as a GET for
// 301/302/303, with the token for 307/308), not retried, and the error says
// what to fix. Go does not consult CheckRedirect for a 300: Send classifies it.
func TestRedirectIsNotFollowed(t *testing.T) {
	for _, code := range []int{300, 301, 302, 303, 307, 308} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var elsewhere atomic.Int32
			target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				elsewhere.Add(1)
			}))
			defer target.Close()
			var posts, others atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost {
					others.Add(1)
				}
				posts.Add(1)
				http.Redirect(w, r, target.URL+"/hook?token=abc", code)
			}))
			defer srv.Close()
			s, m := newSender(t, srv.URL+"/hook", nil)
			err := s.Send(context.Background(), []byte(`{}`))
			want := fmt.Sprintf("receiver answered %d redirect to %s/hook?REDACTED: POST is not re-sent; fix --webhook-url", code, target.URL)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Send = %v, want %q", err, want)
			}
			var pe *PermanentError
			if !errors.As(err, &pe) || pe.Reason != ReasonRedirect || pe.Status != code || !strings.Contains(pe.Body, "fix --webhook-url") {
				t.Errorf("want a redirect PermanentError, got %#v", pe)
			}
			if posts.Load() != 1 || others.Load() != 0 || elsewhere.Load() != 0 {
				t.Errorf("requests: %d to the webhook (%d not POST), %d to the redirect target; want 1, 0, 0", posts.Load(), others.Load(), elsewhere.Load())
			}
			if got := testutil.ToFloat64(m.Retries); got != 0 {
				t.Errorf("retries = %v", got)
			}
			assertUndeliverable(t, m, ReasonRedirect)
		})
	}
}

// A server's Retry-After of an hour is capped at the max backoff.
func TestRetryAfterIsCapped(t *testing.T) {
	for _, code := range []int{429, 503} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					w.Header().Set("Retry-After", "3600")
					w.WriteHeader(code)
				}
			}))
			defer srv.Close()
			s, _ := newSender(t, srv.URL, nil) // max backoff 20ms
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			if err := s.Send(ctx, []byte(`{}`)); err != nil {
				t.Fatalf("Send = %v", err)
			}
			if d := time.Since(start); d > 5*time.Second || calls.Load() != 2 {
				t.Fatalf("took %v and %d calls; Retry-After not capped", d, calls.Load())
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	lo, hi := 5*time.Millisecond, 30*time.Second
	tests := []struct {
		name       string
		retryAfter string
		want       time.Duration // 0: exponential with jitter
	}{
		{"none", "", 0},
		{"unparseable", "soon", 0},
		{"negative", "-1", 0},
		{"seconds", "2", 2 * time.Second},
		{"an hour is capped", "3600", hi},
		{"absurd is capped", "99999999999999", hi},
		{"zero is floored", "0", lo},
		{"date is capped", now.Add(time.Hour).Format(http.TimeFormat), hi},
		{"past date is floored", now.Add(-time.Hour).Format(http.TimeFormat), lo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: 429, Header: http.Header{}}
			if tt.retryAfter != "" {
				resp.Header.Set("Retry-After", tt.retryAfter)
			}
			d, ok := retryAfter(resp, now)
			if ok != (tt.want != 0) {
				t.Fatalf("retryAfter = %v, %v", d, ok)
			}
			if ok && max(lo, min(d, hi)) != tt.want {
				t.Errorf("Retry-After %v, want %v after clamping", d, tt.want)
			}
			got := jitterBackoff(lo, hi, 3, resp) // dates are relative to the real clock: checked above
			switch {
			case !ok && (got < 20*time.Millisecond || got > 40*time.Millisecond):
				t.Errorf("backoff %v, want exponential 20-40ms", got)
			case ok && !strings.Contains(tt.name, "date") && got != tt.want:
				t.Errorf("backoff = %v, want %v", got, tt.want)
			}
		})
	}
}

// While the endpoint is unreachable the sender keeps trying until it comes
// back; only the context ends it.
func TestRetriesUntilEndpointReturns(t *testing.T) {
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(503)
			return
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	s, _ := newSender(t, srv.URL, nil)
	time.AfterFunc(300*time.Millisecond, func() { up.Store(true) })
	if err := s.Send(context.Background(), []byte(`{}`)); err != nil {
		t.Fatalf("Send = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	up.Store(false)
	if err := s.Send(ctx, []byte(`{}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send with an expiring context = %v, want deadline exceeded", err)
	}
}

func TestHeaders(t *testing.T) {
	h := &signature.Config{Secret: []byte("s3cret"), Prefix: "sha256="}
	var gotAuth, gotSig string
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotSig = r.Header.Get("Authorization"), r.Header.Get("X-Hub-Signature-256")
		body, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	s, _ := newSender(t, srv.URL, func(c *Config) { c.HMAC = h })
	if err := s.Send(context.Background(), []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if gotAuth != "Bearer tok" {
		t.Errorf("Authorization = %q", gotAuth)
	}
	if err := h.Verify(gotSig, body); err != nil {
		t.Errorf("signature %q does not verify: %v", gotSig, err)
	}
}

func TestValidateAndRedact(t *testing.T) {
	if err := (Config{}).Validate(); err == nil {
		t.Error("empty URL accepted")
	}
	if err := (Config{URL: "ftp://x"}).Validate(); err == nil {
		t.Error("ftp URL accepted")
	}
	if err := (Config{URL: "https://x", CAFile: "/nonexistent"}).Validate(); err == nil {
		t.Error("missing CA file accepted")
	}
	if got := Redact("https://user:pass@host/p?token=abc"); got != "https://REDACTED@host/p?REDACTED" {
		t.Errorf("Redact = %s", got)
	}
}
