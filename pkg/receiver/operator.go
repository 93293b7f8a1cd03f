package receiver

import (
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
}

func newOperatorAuth(operatorToken, webhookToken string, wh *webhook.Handler) *operatorAuth {
	a := &operatorAuth{wh: wh, enabled: operatorToken != ""}
	a.hash = sha256.Sum256([]byte(operatorToken))
	a.webhook = sha256.Sum256([]byte(webhookToken))
	return a
}

// check answers 401/403 and returns false unless r may read the API.
func (a *operatorAuth) check(w http.ResponseWriter, r *http.Request) bool {
	if !a.enabled {
		return a.wh.CheckToken(w, r)
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		http.Error(w, "Missing operator token", http.StatusUnauthorized)
		return false
	}
	got := sha256.Sum256([]byte(tok))
	switch {
	case subtle.ConstantTimeCompare(got[:], a.hash[:]) == 1:
		return true
	case subtle.ConstantTimeCompare(got[:], a.webhook[:]) == 1:
		http.Error(w, "The webhook token cannot read the API: use the operator token", http.StatusForbidden)
	default:
		http.Error(w, "Invalid operator token", http.StatusUnauthorized)
	}
	return false
}
