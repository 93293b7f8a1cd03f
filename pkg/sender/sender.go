// Package sender delivers event payloads over HTTP with at-least-once
// semantics: connection errors, 5xx and the 4xx a later attempt can fix (401,
// 403, 404, 405, 408, 409, 429) are retried with capped exponential backoff
// and jitter (a Retry-After is honoured up to the max backoff) for as long as
// the context lives. Other 4xx are permanent (the receiver judged the event
// itself), and so is a redirect: a POST is never re-sent to another URL. Every
// event given up on is counted in the undeliverable metric.
package sender

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/signature"
)

// Config describes the endpoint.
type Config struct {
	URL                string
	Token              string            // sent as Authorization: Bearer
	HMAC               *signature.Config // optional body signature
	CAFile             string
	InsecureSkipVerify bool
	Timeout            time.Duration // per attempt; default 10s
	MinBackoff         time.Duration // default 500ms
	MaxBackoff         time.Duration // default 30s
}

// Validate lists every problem with c.
func (c Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		errs = append(errs, errors.New("webhook URL is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("webhook URL: %w", err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("webhook URL %q: scheme must be http or https", Redact(c.URL)))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("webhook URL %q has no host", Redact(c.URL)))
	}
	if c.HMAC != nil {
		if err := c.HMAC.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("CA file: %w", err))
		}
	}
	if c.MaxBackoff < 0 || c.MinBackoff < 0 || (c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff) {
		errs = append(errs, errors.New("backoff: need 0 <= min <= max"))
	}
	return errors.Join(errs...)
}

// Reasons an event is given up on: the values of the undeliverable counter's
// reason label.
const (
	ReasonTooLarge = "too_large" // 413: the body will never fit
	ReasonRedirect = "redirect"  // 3xx: the POST is not re-sent elsewhere
	ReasonRejected = "rejected"  // any other final 4xx
)

// PermanentError is a response that retrying cannot fix: a redirect, a 413
// or a 4xx that is not retried (see retryable). Reason is one of the Reason
// constants.
type PermanentError struct {
	Status   int
	Body     string // the response text (for a redirect: the explanation)
	Reason   string
	Location string // redirect target, redacted, when Reason is ReasonRedirect
}

func (e *PermanentError) Error() string {
	if e.Reason == ReasonRedirect {
		return e.Body
	}
	return fmt.Sprintf("endpoint rejected the event: HTTP %d: %s", e.Status, e.Body)
}

func redirectError(status int, location string) *PermanentError {
	msg := fmt.Sprintf("receiver answered %d redirect to %s: POST is not re-sent; fix --webhook-url", status, location)
	return &PermanentError{Status: status, Body: msg, Reason: ReasonRedirect, Location: location}
}

// Sender posts payloads.
type Sender struct {
	cfg           Config
	client        *retryablehttp.Client
	log           *zap.Logger
	url           string
	retries       prometheus.Counter
	latency       prometheus.Histogram
	undeliverable *prometheus.CounterVec
}

// Metrics is what a Sender records; the caller registers it.
type Metrics struct {
	Retries prometheus.Counter
	Latency prometheus.Histogram
	// Undeliverable counts events given up on, by reason (the Reason
	// constants); any increase is an event the receiver never got.
	Undeliverable *prometheus.CounterVec
}

// NewMetrics creates the sender's metrics under the given subsystem.
func NewMetrics(reg prometheus.Registerer, subsystem string) (Metrics, error) {
	m := Metrics{
		Retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: subsystem, Name: "send_retries_total", Help: "HTTP delivery attempts that were retries."}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "ocpdr", Subsystem: subsystem, Name: "send_duration_seconds", Help: "Time to deliver one event, retries included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}),
		Undeliverable: newUndeliverable(subsystem),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Retries, m.Latency, m.Undeliverable} {
			if err := reg.Register(c); err != nil {
				return m, fmt.Errorf("register sender metrics: %w", err)
			}
		}
	}
	return m, nil
}

func newUndeliverable(subsystem string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: subsystem, Name: "undeliverable_events_total",
		Help: "Events given up on because the receiver's answer is final (too_large: 413, redirect: 3xx not followed, rejected: other 4xx)."}, []string{"reason"})
	for _, r := range []string{ReasonTooLarge, ReasonRedirect, ReasonRejected} {
		v.WithLabelValues(r) // export zeros so an alert on increase() sees the first one
	}
	return v
}

// New builds a Sender. log, Retries and Latency must not be nil; a nil
// Undeliverable is replaced by an unregistered counter.
func New(cfg Config, log *zap.Logger, m Metrics) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = withDefaults(cfg)
	tr, err := newTransport(cfg)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(cfg.URL, "http://") {
		log.Warn("webhook URL is plain http: tokens and events travel unencrypted", zap.String("url", Redact(cfg.URL)))
	}
	if m.Undeliverable == nil {
		m.Undeliverable = newUndeliverable("unregistered")
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: tr, Timeout: cfg.Timeout, CheckRedirect: refuseRedirect}
	rc.Logger = nil
	rc.RetryMax = math.MaxInt32 // bounded by the caller's context
	rc.RetryWaitMin, rc.RetryWaitMax = cfg.MinBackoff, cfg.MaxBackoff
	rc.CheckRetry = checkRetry
	rc.Backoff = jitterBackoff
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	s := &Sender{cfg: cfg, client: rc, log: log, url: Redact(cfg.URL), retries: m.Retries, latency: m.Latency, undeliverable: m.Undeliverable}
	rc.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, attempt int) {
		if attempt > 0 {
			s.retries.Inc()
		}
	}
	rc.ResponseLogHook = s.warnRetried4xx
	return s, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	return cfg
}

func newTransport(cfg Config) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // only when the operator asks
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr.TLSClientConfig = tlsCfg
	return tr, nil
}

// refuseRedirect stops at the first redirect: Go would turn a 301/302/303
// POST into a bodyless GET (answered 405 forever) and re-send a 307/308 POST,
// token included, wherever Location points. The error is permanent.
func refuseRedirect(req *http.Request, _ []*http.Request) error {
	status := 0
	if req.Response != nil {
		status = req.Response.StatusCode
	}
	return redirectError(status, Redact(req.URL.String()))
}

// checkRetry classifies: connection errors and retryable statuses are
// retried; a refused redirect and every other status are final; the end of
// the context stops.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	var perm *PermanentError
	if errors.As(err, &perm) {
		return false, perm
	}
	if err != nil {
		// Connection refused, reset, timeout, TLS: the endpoint may come
		// back (or its CA be fixed); nothing is dropped meanwhile.
		return true, nil
	}
	return retryable(resp.StatusCode), nil
}

// retryable lists the statuses a later attempt can fix: 401/403 while a
// rotated token reaches one side, 404/405 while a route or receiver rolls
// out, 408, 409, 429 and 5xx. Other 4xx (400, 413, 422, ...) judge the event.
func retryable(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed,
		http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

// warnRetried4xx logs the retried 4xx answers, which need an operator (token,
// URL) more often than time.
func (s *Sender) warnRetried4xx(_ retryablehttp.Logger, resp *http.Response) {
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && retryable(resp.StatusCode) {
		s.log.Warn("receiver refused the event; retrying (token rotation or rollout in progress?)", zap.String("url", s.url), zap.Int("status", resp.StatusCode))
	}
}

// jitterBackoff is exponential backoff with full jitter, capped; a server's
// Retry-After is honoured within [min, max].
func jitterBackoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if d, ok := retryAfter(resp, time.Now()); ok {
		return max(lo, min(d, hi))
	}
	ceil := float64(lo) * math.Pow(2, float64(attempt))
	if ceil > float64(hi) || math.IsInf(ceil, 0) {
		ceil = float64(hi)
	}
	half := ceil / 2
	return time.Duration(half + rand.Float64()*half)
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP-date.
func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil {
		return 0, false
	}
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, math.MaxInt32)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now), true
	}
	return 0, false
}

// Send delivers body, retrying until it is accepted, rejected for good, or
// ctx ends. A *PermanentError (in the chain) means the event was given up on
// and counted as undeliverable.
func (s *Sender) Send(ctx context.Context, body []byte) error {
	start := time.Now()
	req, err := s.newRequest(ctx, body)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if resp != nil {
		defer resp.Body.Close()
	}
	var perm *PermanentError
	switch {
	case errors.As(err, &perm):
		return s.giveUp(perm)
	case err != nil:
		return fmt.Errorf("post to %s: %w", s.url, err)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		s.latency.Observe(time.Since(start).Seconds())
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("post to %s: %w", s.url, ctx.Err())
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	return s.giveUp(permanentError(resp, msg))
}

func (s *Sender) newRequest(ctx context.Context, body []byte) (*retryablehttp.Request, error) {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	if s.cfg.HMAC != nil {
		req.Header.Set(s.cfg.HMAC.HeaderName(), s.cfg.HMAC.Sign(body))
	}
	return req, nil
}

// permanentError describes a final answer. A 3xx gets here when Go does not
// consult CheckRedirect (a 307/308 whose body cannot be replayed, a 300 or
// 304).
func permanentError(resp *http.Response, msg []byte) *PermanentError {
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		loc := "(no Location)"
		if u, err := resp.Location(); err == nil {
			loc = Redact(u.String())
		}
		return redirectError(resp.StatusCode, loc)
	}
	reason := ReasonRejected
	if resp.StatusCode == http.StatusRequestEntityTooLarge {
		reason = ReasonTooLarge
	}
	return &PermanentError{Status: resp.StatusCode, Body: strings.TrimSpace(string(msg)), Reason: reason}
}

// giveUp counts an undeliverable event.
func (s *Sender) giveUp(perm *PermanentError) error {
	s.undeliverable.WithLabelValues(perm.Reason).Inc()
	return fmt.Errorf("post to %s: %w", s.url, perm)
}

// Redact removes credentials and the query from a URL for logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparseable URL>"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	return u.String()
}
