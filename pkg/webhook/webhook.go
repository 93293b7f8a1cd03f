// Package webhook is the receiver's HTTP ingress, compatible with the
// ansible.eda.webhook event source: POST on any path, bearer token, optional
// HMAC signature, 1 MiB body limit, the same status codes. An accepted body is
// handed to a durable Sink before the 200 is written. Stricter than EDA on
// purpose: bodies must be UTF-8 and nest at most MaxJSONDepth levels, and
// meta.headers keeps only an allow-list of headers (see storedHeaders).
package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/event"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

// DefaultMaxBodyBytes is aiohttp's client_max_size, the limit under EDA.
const DefaultMaxBodyBytes = 1 << 20

// Sink stores an accepted event durably.
type Sink interface {
	Append(ctx context.Context, it *inbox.Item) (inbox.Result, error)
}

// Verifier checks a request body against the value of the signature header.
// pkg/signature's Config satisfies it.
type Verifier interface {
	Verify(headerValue string, body []byte) error
}

// Config configures the handler.
type Config struct {
	// Token, when set, is required as "Authorization: Bearer <token>".
	Token string
	// Verifier, when set, checks the signature found in SignatureHeader.
	Verifier        Verifier
	SignatureHeader string
	// MaxBodyBytes is the largest accepted body (default 1 MiB).
	MaxBodyBytes int64
	Logger       *zap.Logger
	Registerer   prometheus.Registerer
	// Now and NewUUID may be replaced in tests.
	Now     func() time.Time
	NewUUID func() string
}

// Handler serves webhook POSTs.
type Handler struct {
	cfg       Config
	tokenHash [32]byte
	sink      Sink
	log       *zap.Logger
	received  prometheus.Counter
	rejected  *prometheus.CounterVec
	dropped   *prometheus.CounterVec
}

// Rejection reasons (the bounded label values of the rejected metric).
const (
	ReasonMissingToken     = "missing_token"
	ReasonBadToken         = "bad_token"
	ReasonMissingSignature = "missing_signature"
	ReasonBadSignature     = "bad_signature"
	ReasonTooLarge         = "too_large"
	ReasonInvalidJSON      = "invalid_json"
	ReasonInvalidUTF8      = "invalid_utf8"
	ReasonTooDeep          = "too_deep"
	ReasonNumberRange      = "number_out_of_range"
	ReasonStoreFailed      = "store_failed"
	ReasonReadFailed       = "read_failed"
)

// reasons lists every rejection reason, so each series exists from the start.
var reasons = []string{
	ReasonMissingToken, ReasonBadToken, ReasonMissingSignature, ReasonBadSignature, ReasonTooLarge,
	ReasonInvalidJSON, ReasonInvalidUTF8, ReasonTooDeep, ReasonNumberRange, ReasonStoreFailed, ReasonReadFailed,
}

// New returns a handler that stores events in sink.
func New(cfg Config, sink Sink) (*Handler, error) {
	if sink == nil {
		return nil, errors.New("webhook: nil sink")
	}
	if cfg.Verifier != nil && cfg.SignatureHeader == "" {
		return nil, errors.New("webhook: signature verifier without a header name")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewUUID == nil {
		cfg.NewUUID = uuid.NewString
	}
	h := &Handler{cfg: cfg, sink: sink, log: cfg.Logger}
	if cfg.Token != "" {
		h.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}
	h.received = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "receiver_events_received_total", Help: "Webhook events acknowledged with 200 (stored or deduplicated).",
	})
	h.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "receiver_events_rejected_total", Help: "Webhook requests rejected, by reason.",
	}, []string{"reason"})
	h.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "receiver_events_deduplicated_total", Help: "Acknowledged events not stored again, by reason.",
	}, []string{"reason"})
	for _, r := range reasons {
		h.rejected.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		if err := registerAll(cfg.Registerer, h.received, h.rejected, h.dropped); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Mount registers the webhook on r: POST on every path not otherwise routed,
// and 405 for other methods.
func (h *Handler) Mount(r chi.Router) {
	r.Post("/*", h.ServeHTTP)
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "405: Method Not Allowed", http.StatusMethodNotAllowed)
	})
}

func (h *Handler) reject(w http.ResponseWriter, status int, reason, text string) {
	h.rejected.WithLabelValues(reason).Inc()
	http.Error(w, text, status)
}

// CheckToken answers 401 (and returns false) unless the request carries the
// configured bearer token. It is also used to protect /api/v1.
func (h *Handler) CheckToken(w http.ResponseWriter, r *http.Request) bool {
	if h.cfg.Token == "" {
		return true
	}
	vals, ok := r.Header["Authorization"]
	if !ok || len(vals) == 0 {
		h.reject(w, http.StatusUnauthorized, ReasonMissingToken, "Missing authorization token")
		return false
	}
	parts := strings.Split(vals[0], " ")
	if len(parts) != 2 {
		h.reject(w, http.StatusUnauthorized, ReasonBadToken, "Invalid authorization token")
		return false
	}
	if parts[0] != "Bearer" {
		h.reject(w, http.StatusUnauthorized, ReasonBadToken, "Only Bearer type is accepted")
		return false
	}
	got := sha256.Sum256([]byte(parts[1]))
	if subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) != 1 {
		h.reject(w, http.StatusUnauthorized, ReasonBadToken, "Invalid authorization token")
		return false
	}
	return true
}

// ServeHTTP handles one webhook POST.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.CheckToken(w, r) {
		return
	}
	body, tooLarge, err := h.readBody(r)
	if tooLarge {
		// The body was read (and discarded) up to a bound, so the client is
		// not reset while still sending; then the connection is closed.
		w.Header().Set("Connection", "close")
		h.reject(w, http.StatusRequestEntityTooLarge, ReasonTooLarge, "Request Entity Too Large")
		return
	}
	if err != nil {
		h.log.Warn("webhook: read body", zap.Error(err))
		h.reject(w, http.StatusBadRequest, ReasonReadFailed, "Invalid request body")
		return
	}
	if h.cfg.Verifier != nil {
		sig := r.Header.Get(h.cfg.SignatureHeader)
		if sig == "" {
			h.reject(w, http.StatusBadRequest, ReasonMissingSignature, "Signature header not found")
			return
		}
		if err := h.cfg.Verifier.Verify(sig, body); err != nil {
			h.reject(w, http.StatusUnauthorized, ReasonBadSignature, "HMAC verification failed")
			return
		}
	}
	endpoint := strings.TrimPrefix(r.URL.Path, "/")
	p, ok := h.decode(w, body, endpoint)
	if !ok {
		return
	}
	it := &inbox.Item{
		ID:         p.ID,
		Initial:    p.Initial,
		Deleted:    p.Type == "DELETED",
		Endpoint:   endpoint,
		Headers:    eventHeaders(r),
		ReceivedAt: h.cfg.Now().UTC(),
		UUID:       h.cfg.NewUUID(),
		Payload:    body,
	}
	if uid := p.Resource.Metadata.UID; uid != "" {
		it.ObjectKey = p.Cluster + "/" + uid
		it.ResourceVersion = p.Resource.Metadata.ResourceVersion
	}
	res, err := h.sink.Append(r.Context(), it)
	if err != nil {
		text := "Event not stored"
		if !errors.Is(err, inbox.ErrUnavailable) {
			h.log.Error("webhook: store event", zap.Error(err), zap.String("endpoint", endpoint))
		} else {
			h.log.Warn("webhook: event refused", zap.Error(err), zap.String("endpoint", endpoint))
			// Nothing was acknowledged: the sender keeps the event and retries.
			text += ": " + err.Error()
			w.Header().Set("Retry-After", "5")
		}
		h.reject(w, http.StatusServiceUnavailable, ReasonStoreFailed, text)
		return
	}
	if res.Duplicate {
		h.dropped.WithLabelValues(res.Reason).Inc()
	}
	h.received.Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, endpoint)
}

// decode checks the body (UTF-8, nesting depth, JSON syntax) and reads the
// event header the inbox needs for deduplication (event.Peek: other bodies
// leave it empty); on failure it answers 400 and returns false.
func (h *Handler) decode(w http.ResponseWriter, body []byte, endpoint string) (event.Header, bool) {
	var p event.Header
	if err := checkPayload(body, MaxJSONDepth); err != nil {
		h.log.Warn("webhook: payload rejected", zap.Error(err), zap.String("endpoint", endpoint))
		switch {
		case errors.Is(err, errInvalidUTF8):
			h.reject(w, http.StatusBadRequest, ReasonInvalidUTF8, "Invalid UTF-8 in payload")
		case errors.Is(err, errNumberRange):
			h.reject(w, http.StatusBadRequest, ReasonNumberRange, "JSON number out of range (beyond a 64-bit float)")
		default:
			h.reject(w, http.StatusBadRequest, ReasonTooDeep, fmt.Sprintf("JSON nesting too deep (limit %d)", MaxJSONDepth))
		}
		return p, false
	}
	if !json.Valid(body) {
		h.reject(w, http.StatusBadRequest, ReasonInvalidJSON, "Invalid JSON payload")
		return p, false
	}
	return event.Peek(body), true
}

// readBody reads at most MaxBodyBytes. Over the limit it keeps reading and
// discarding up to a bound (four times the limit) so that the client gets to
// read the 413 instead of a reset.
func (h *Handler) readBody(r *http.Request) ([]byte, bool, error) {
	max := h.cfg.MaxBodyBytes
	if r.ContentLength > max {
		_, _ = io.CopyN(io.Discard, r.Body, 4*max)
		return nil, true, nil
	}
	capHint := int64(512)
	if r.ContentLength > 0 {
		capHint = r.ContentLength + 1
	}
	buf := make([]byte, 0, capHint)
	lr := io.LimitReader(r.Body, max+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, err
		}
	}
	if int64(len(buf)) > max {
		_, _ = io.CopyN(io.Discard, r.Body, 3*max)
		return nil, true, nil
	}
	return buf, false, nil
}
