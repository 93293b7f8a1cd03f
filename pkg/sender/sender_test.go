package sender

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
		name      string
		statuses  []int // answered in order, then 200
		wantErr   bool
		wantCalls int32
	}{
		{"200 first time", nil, false, 1},
		{"503 then 502 then 200", []int{503, 502}, false, 3},
		{"429 then 200", []int{429}, false, 2},
		{"400 is permanent", []int{400}, true, 1},
		{"401 is permanent", []int{401}, true, 1},
		{"413 is permanent", []int{413}, true, 1},
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
			if (err != nil) != tt.wantErr {
				t.Fatalf("Send = %v, wantErr %v", err, tt.wantErr)
			}
			var pe *PermanentError
			if tt.wantErr && (!errors.As(err, &pe) || pe.Body != "nope") {
				t.Errorf("want a PermanentError carrying the response text, got %v", err)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("calls = %d, want %d", got, tt.wantCalls)
			}
			if got := testutil.ToFloat64(m.Retries); got != float64(tt.wantCalls-1) {
				t.Errorf("retries metric = %v, want %d", got, tt.wantCalls-1)
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
