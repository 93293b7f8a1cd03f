// Package sender delivers event payloads over HTTP with at-least-once
// semantics: connection errors, 429 and 5xx are retried with capped
// exponential backoff and jitter for as long as the context lives; any other
// 4xx is permanent (the receiver said the event itself is wrong).
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

// PermanentError is a response that retrying cannot fix (a 4xx other than 429).
type PermanentError struct {
	Status int
	Body   string
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("endpoint rejected the event: HTTP %d: %s", e.Status, e.Body)
}

// Sender posts payloads.
type Sender struct {
	cfg     Config
	client  *retryablehttp.Client
	log     *zap.Logger
	url     string
	retries prometheus.Counter
	latency prometheus.Histogram
}

// Metrics is what a Sender records; the caller registers it.
type Metrics struct {
	Retries prometheus.Counter
	Latency prometheus.Histogram
}

// NewMetrics creates the sender's metrics under the given subsystem.
func NewMetrics(reg prometheus.Registerer, subsystem string) (Metrics, error) {
	m := Metrics{
		Retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ocpdr", Subsystem: subsystem, Name: "send_retries_total", Help: "HTTP delivery attempts that were retries."}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "ocpdr", Subsystem: subsystem, Name: "send_duration_seconds", Help: "Time to deliver one event, retries included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Retries, m.Latency} {
			if err := reg.Register(c); err != nil {
				return m, fmt.Errorf("register sender metrics: %w", err)
			}
		}
	}
	return m, nil
}

// New builds a Sender. log and the metrics must not be nil.
func New(cfg Config, log *zap.Logger, m Metrics) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
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
	if strings.HasPrefix(cfg.URL, "http://") {
		log.Warn("webhook URL is plain http: tokens and events travel unencrypted", zap.String("url", Redact(cfg.URL)))
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: tr, Timeout: cfg.Timeout}
	rc.Logger = nil
	rc.RetryMax = math.MaxInt32 // bounded by the caller's context
	rc.RetryWaitMin, rc.RetryWaitMax = cfg.MinBackoff, cfg.MaxBackoff
	rc.CheckRetry = checkRetry
	rc.Backoff = jitterBackoff
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	s := &Sender{cfg: cfg, client: rc, log: log, url: Redact(cfg.URL), retries: m.Retries, latency: m.Latency}
	rc.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, attempt int) {
		if attempt > 0 {
			s.retries.Inc()
		}
	}
	return s, nil
}

// checkRetry classifies: retry connection errors, 429 and 5xx; stop when the
// context ends; everything else is final.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		// Connection refused, reset, timeout, TLS: the endpoint may come
		// back (or its CA be fixed); nothing is dropped meanwhile.
		return true, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return true, nil
	}
	return false, nil
}

// jitterBackoff is exponential backoff with full jitter, capped, honouring a
// Retry-After header on 429/503.
func jitterBackoff(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d := retryablehttp.DefaultBackoff(min, max, attempt, resp); d > 0 && resp.Header.Get("Retry-After") != "" {
			return d
		}
	}
	ceil := float64(min) * math.Pow(2, float64(attempt))
	if ceil > float64(max) || math.IsInf(ceil, 0) {
		ceil = float64(max)
	}
	half := ceil / 2
	return time.Duration(half + rand.Float64()*half)
}

// Send delivers body, retrying until it is accepted, rejected for good, or
// ctx ends.
func (s *Sender) Send(ctx context.Context, body []byte) error {
	start := time.Now()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	if s.cfg.HMAC != nil {
		req.Header.Set(s.cfg.HMAC.HeaderName(), s.cfg.HMAC.Sign(body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("post to %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		s.latency.Observe(time.Since(start).Seconds())
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("post to %s: %w", s.url, ctx.Err())
	}
	return &PermanentError{Status: resp.StatusCode, Body: strings.TrimSpace(string(msg))}
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
