// The request headers kept in an event's meta.headers.

package webhook

import (
	"net/http"
	"unicode/utf8"
)

// storedHeaders is the allow-list of request headers kept in meta.headers.
//
// Stored headers are persisted with the event and handed to every job, so
// anything here is readable by rulebooks, job templates and /api/v1.
// ansible.eda.webhook stores all headers (dict(request.headers) minus an
// exact-case "Authorization"); this receiver deliberately stores fewer.
// A deny-list cannot keep up with credential headers (Proxy-Authorization,
// Cookie, X-Api-Key, X-Gitlab-Token, oauth-proxy's X-Forwarded-Access-Token,
// X-Forwarded-User/-Email, X-Auth-Request-*, ...), and headers were also
// a way around the body limit (a 1 MB header was stored whole). The
// signature header is not stored either: it has been checked already.
//
// Only the first value of each is kept, at most maxHeaderValueBytes of it,
// so meta.headers holds at most maxStoredHeaders entries (plus Host) of
// bounded size. Names are Go-canonical.
var storedHeaders = [...]string{
	"Content-Type",
	"User-Agent",
	"X-Request-Id",
	"X-Forwarded-For",
	"X-Github-Event",
	"X-Github-Delivery",
	"X-Gitlab-Event",
	"X-Gitlab-Event-Uuid",
}

const (
	// maxStoredHeaders bounds the number of stored headers besides Host.
	maxStoredHeaders = len(storedHeaders)
	// maxHeaderValueBytes bounds each stored value (cut at a UTF-8 boundary).
	maxHeaderValueBytes = 256
)

// eventHeaders is meta.headers: Host and the allow-listed headers present on
// r, each truncated to maxHeaderValueBytes.
func eventHeaders(r *http.Request) map[string]string {
	out := make(map[string]string, maxStoredHeaders+1)
	if r.Host != "" {
		out["Host"] = truncateValue(r.Host)
	}
	for _, name := range storedHeaders {
		if v := r.Header.Values(name); len(v) > 0 {
			out[name] = truncateValue(v[0])
		}
	}
	return out
}

// truncateValue cuts v to at most maxHeaderValueBytes without splitting a
// UTF-8 sequence.
func truncateValue(v string) string {
	if len(v) <= maxHeaderValueBytes {
		return v
	}
	n := maxHeaderValueBytes
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return v[:n]
}
