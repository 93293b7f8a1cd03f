package receiver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/ocpv-dr/ocpv-dr/pkg/webhook"
)

// operatorAuth guards /api/v1. With an operator token configured
// (RECEIVER_OPERATOR_TOKEN or --operator-token-file) only that token reads
// the API and the webhook token is refused with 403: whoever can post
// events (every forwarder, watch-exports on the NFS host) cannot read what
// was posted or the job logs. Without one, the webhook token still reads the
// API as before, and the receiver warns at start.
type operatorAuth struct {
	hash    [sha256.Size]byte
	webhook [sha256.Size]byte
	enabled bool
	wh      *webhook.Handler
	// session is the value of the status page's login cookie: random per
	// process, so a restart logs everyone out and the cookie never holds
	// the token itself.
	session string
	open    bool // no token at all (--insecure-no-auth): anyone reads
}

func newOperatorAuth(operatorToken, webhookToken string, wh *webhook.Handler) *operatorAuth {
	a := &operatorAuth{wh: wh, enabled: operatorToken != ""}
	a.hash = sha256.Sum256([]byte(operatorToken))
	a.webhook = sha256.Sum256([]byte(webhookToken))
	a.session = rand.Text()
	a.open = operatorToken == "" && webhookToken == ""
	return a
}

// hasSession reports whether a GET carries the login cookie. Only reading
// requests accept the cookie (SameSite=Strict besides): nothing that
// changes state can be triggered by a cross-site form.
func (a *operatorAuth) hasSession(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	c, err := r.Cookie(sessionCookie)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(a.session)) == 1
}

// check answers 401/403 and returns false unless r may read the API.
func (a *operatorAuth) check(w http.ResponseWriter, r *http.Request) bool {
	if a.hasSession(r) {
		return true
	}
	if !a.enabled {
		return a.wh.CheckToken(w, r)
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		http.Error(w, "Missing operator token", http.StatusUnauthorized)
		return false
	}
	if code, msg := a.token(tok); code != http.StatusOK {
		http.Error(w, msg, code)
		return false
	}
	return true
}

// token judges a presented token: 200 for the operator token (or, without
// one, the webhook token), 403 for the webhook token, else 401.
func (a *operatorAuth) token(tok string) (int, string) {
	got := sha256.Sum256([]byte(tok))
	switch {
	case a.enabled && subtle.ConstantTimeCompare(got[:], a.hash[:]) == 1:
		return http.StatusOK, ""
	case !a.enabled && subtle.ConstantTimeCompare(got[:], a.webhook[:]) == 1:
		return http.StatusOK, ""
	case subtle.ConstantTimeCompare(got[:], a.webhook[:]) == 1:
		return http.StatusForbidden, "The webhook token cannot read the API: use the operator token"
	default:
		return http.StatusUnauthorized, "Invalid operator token"
	}
}

// pageAllowed is check without an answer: the status page shows its login
// form instead.
func (a *operatorAuth) pageAllowed(r *http.Request) bool {
	if a.hasSession(r) {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return a.open
	}
	if a.open {
		return true
	}
	code, _ := a.token(tok)
	return code == http.StatusOK
}
