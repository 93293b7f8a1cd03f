package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/ocpv-dr/ocpv-dr/pkg/sender"
)

// flakyProxy sits between the sender and the real receiver and answers
// with the fault of the current phase instead of forwarding.
type flakyProxy struct {
	fault atomic.Pointer[func(http.ResponseWriter) bool] // true: answered, do not forward
	next  http.Handler
}

func (p *flakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f := p.fault.Load(); f != nil && (*f)(w) {
		return
	}
	p.next.ServeHTTP(w, r)
}

func (p *flakyProxy) set(f func(http.ResponseWriter) bool) { p.fault.Store(&f) }

func status(code int, hdr ...string) func(http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
		return true
	}
}

// TestDeliveryThroughReceiverFaults (issue 15.6): events handed to the
// sender while the receiver answers 401 (a token being rotated), 404/405,
// or 503 with Retry-After: 3600 all arrive once the receiver answers again;
// a redirect and a body over the receiver's limit are given up on with a
// clear error and counted as undeliverable, never dropped in silence.
func TestDeliveryThroughReceiverFaults(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	r := startReceiver(t, state)
	target, _ := url.Parse(r.url)
	proxy := &flakyProxy{next: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m, err := sender.NewMetrics(reg, "faults")
	if err != nil {
		t.Fatal(err)
	}
	s, err := sender.New(sender.Config{URL: srv.URL + "/endpoint", Token: r.token, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, zaptest.NewLogger(t), m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, phase := range []struct {
		fault string
		set   func(http.ResponseWriter) bool
	}{
		{"receiver answers 401 for 1 s (token rotation), then 200", status(http.StatusUnauthorized)},
		{"receiver answers 405 for 1 s (a redirect turned POST into GET upstream), then 200", status(http.StatusMethodNotAllowed)},
		{"receiver answers 503 with Retry-After: 3600 for 1 s, then 200", status(http.StatusServiceUnavailable, "Retry-After", "3600")},
	} {
		proxy.set(phase.set)
		time.AfterFunc(time.Second, func() { proxy.set(func(http.ResponseWriter) bool { return false }) })
		ids := sendAll(ctx, t, s, phase.fault, 50)
		missing := r.awaitStored(t, ids, 10*time.Second)
		record(t, Row{Fault: phase.fault, Acknowledged: len(ids), Found: len(ids) - len(missing), Lost: len(missing),
			Note: "sender retried with backoff; Retry-After capped at the max backoff"})
	}

	// Permanent answers: given up on, with the reason, and counted.
	proxy.set(status(http.StatusFound, "Location", "https://elsewhere.example/endpoint"))
	err = s.Send(ctx, []byte(`{"id":"redirected"}`))
	var perm *sender.PermanentError
	if !errors.As(err, &perm) || !strings.Contains(err.Error()+perm.Body, "not re-sent") {
		t.Errorf("redirect: %v, want a permanent error saying the POST is not re-sent", err)
	}
	proxy.set(func(http.ResponseWriter) bool { return false })
	err = s.Send(ctx, []byte(`{"id":"huge","pad":"`+strings.Repeat("x", 2<<20)+`"}`))
	if !errors.As(err, &perm) {
		t.Errorf("413: %v, want a permanent error", err)
	}
	for _, reason := range []string{"redirect", "too_large"} {
		if n := testutil.ToFloat64(m.Undeliverable.WithLabelValues(reason)); n != 1 {
			t.Errorf("undeliverable{reason=%s} = %v, want 1", reason, n)
		}
	}
	record(t, Row{Fault: "receiver answers 302 to https; body over the receiver's limit (413)", Acknowledged: 0, Found: 0, Lost: 0,
		Note: "both given up on with a clear error and counted in undeliverable_events_total (alerted), none silently"})
}

func sendAll(ctx context.Context, t *testing.T, s *sender.Sender, prefix string, n int) []string {
	t.Helper()
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%x-%03d", []byte(prefix[:12]), i)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = s.Send(ctx, []byte(fmt.Sprintf(`{"id":%q,"kind":"FaultProbe","type":"MODIFIED"}`, ids[i])))
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Errorf("%s: sends failed: %v", prefix, err)
	}
	return ids
}
