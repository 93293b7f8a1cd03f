package receiver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"golang.org/x/net/netutil"
)

// Webhook token policy.
const (
	// MinWebhookTokenLength is the shortest webhook token accepted.
	MinWebhookTokenLength = 32
	// PlaceholderWebhookToken is the value deploy/examples/secrets.yaml ships
	// with; it is refused so that an unedited Secret does not go live.
	PlaceholderWebhookToken = "REPLACE-WITH-A-LONG-RANDOM-TOKEN"
)

// HTTP server limits that are not configurable.
const (
	maxReadHeaderTimeout = 10 * time.Second
	idleTimeout          = 120 * time.Second
	healthWriteTimeout   = 30 * time.Second
)

const tokenSources = "RECEIVER_WEBHOOK_TOKEN or --webhook-token-file"

// checkWebhookToken applies the token policy: a token of at least
// MinWebhookTokenLength characters that is not the shipped placeholder, or
// no token at all when insecure (--insecure-no-auth) is set.
func checkWebhookToken(token string, insecure bool) error {
	switch {
	case token == "" && !insecure:
		return fmt.Errorf("no webhook token: set %s (at least %d characters, e.g. `openssl rand -hex 32`), "+
			"or pass --insecure-no-auth to accept unauthenticated events", tokenSources, MinWebhookTokenLength)
	case token == "":
		return nil
	case insecure:
		return fmt.Errorf("--insecure-no-auth is set together with a webhook token (%s): choose one", tokenSources)
	case token == PlaceholderWebhookToken:
		return fmt.Errorf("the webhook token (%s) is the placeholder %s shipped in deploy/examples/secrets.yaml: "+
			"replace it with a random token of at least %d characters", tokenSources, PlaceholderWebhookToken, MinWebhookTokenLength)
	case utf8.RuneCountInString(token) < MinWebhookTokenLength:
		return fmt.Errorf("the webhook token (%s) has %d characters, at least %d are required (e.g. `openssl rand -hex 32`)",
			tokenSources, utf8.RuneCountInString(token), MinWebhookTokenLength)
	}
	return nil
}

// validateLimits checks the HTTP server limits.
func (c Config) validateLimits() []error {
	var errs []error
	if c.ReadTimeout <= 0 {
		errs = append(errs, errors.New("--read-timeout must be positive"))
	}
	if c.MaxConnections <= 0 {
		errs = append(errs, errors.New("--max-connections must be positive"))
	}
	return errs
}

// httpServer returns a server whose every request (headers and body) must be
// read within --read-timeout; idle keep-alive connections close after
// idleTimeout.
func (c Config) httpServer(h http.Handler, tc *tls.Config, log *zap.Logger) *http.Server {
	return &http.Server{Handler: h, TLSConfig: tc, ReadHeaderTimeout: min(maxReadHeaderTimeout, c.ReadTimeout),
		ReadTimeout: c.ReadTimeout, IdleTimeout: idleTimeout, ErrorLog: zap.NewStdLog(log)}
}

// servers returns the webhook server and, with --health-listen, the health
// server, and the addresses they listen on.
func (c Config) servers(main, health http.Handler, tc *tls.Config, log *zap.Logger) ([]*http.Server, []string) {
	servers := []*http.Server{c.httpServer(main, tc, log.Named("http"))}
	addrs := []string{c.Listen}
	if c.HealthListen != "" {
		hs := c.httpServer(health, nil, log.Named("health-http"))
		// Probe and scrape answers are small: a client that does not read
		// them does not keep the connection.
		hs.WriteTimeout = healthWriteTimeout
		servers = append(servers, hs)
		addrs = append(addrs, c.HealthListen)
	}
	return servers, addrs
}

// listen opens a listener on every address, each serving at most
// --max-connections connections at once: further connections wait in the
// kernel's accept queue until one closes.
func (c Config) listen(addrs []string) ([]net.Listener, error) {
	lns := make([]net.Listener, 0, len(addrs))
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("receiver: listen %s: %w", a, err)
		}
		lns = append(lns, netutil.LimitListener(ln, c.MaxConnections))
	}
	return lns, nil
}
