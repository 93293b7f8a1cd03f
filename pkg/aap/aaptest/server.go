// Package aaptest is the project's one fake AAP/AWX Automation Controller,
// written to the contract in the project's research notes (aap.md §3, §9).
// It serves one of two contracts on the same HTTP layer (auth, API prefixes,
// request log, injected faults, JSON errors, pagination):
//
//   - New / NewTLS: the job-launch contract pkg/aap follows (launch.go,
//     jobs.go): both API prefixes with relative links rendered in the
//     request's prefix, paginated lists with exact filters, job and workflow
//     launches with ignored_fields, survey validation and the workflow 400s,
//     the job lifecycle pending → waiting → running → final, labels.
//   - NewConfigStore: the configuration-as-code contract the awx.awx modules
//     use (objects.go): an in-memory object store with exact-match and or__
//     lookups, create/patch/delete, association sub-resources, survey specs
//     and secret credential inputs returned as $encrypted$.
//
// Routes are http.ServeMux method patterns; anything else answers the
// Controller's JSON 404.
package aaptest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// The API prefixes a Controller answers: its own, and the one behind the AAP
// 2.5 gateway.
const (
	controllerPrefix = "/api/v2/"
	gatewayPrefix    = "/api/controller/v2/"
)

// Fault is an injected failure.
type Fault struct {
	Method string
	// PathContains selects requests (after the API prefix).
	PathContains string
	Status       int
	// AfterCreate applies to launches: the job is created, then Status is answered.
	AfterCreate bool
	// Times is how many requests it hits (default 1).
	Times int
}

// request is one served request as the log keeps it.
type request struct{ method, uri, path string }

// Server is the fake Controller. Every handler runs under mu.
type Server struct {
	*httptest.Server
	Token    string
	Username string
	Password string
	// ReadOnlyToken authenticates but may not launch (403).
	ReadOnlyToken string
	// PageSize is the default page size of the launch contract's lists (25
	// as in AWX).
	PageSize int

	mu       sync.Mutex
	version  string
	faults   []*Fault
	nextID   int64
	requests []request
	launchState
	storeState
}

// New starts a fake Controller serving the job-launch contract with the
// given bearer token.
func New(token string) *Server {
	s := newLaunch(token)
	s.Server = httptest.NewServer(s.handler(s.launchRoutes()))
	return s
}

// NewTLS starts the job-launch fake on HTTPS (its certificate is
// s.Certificate(); write it as PEM to test a CA bundle).
func NewTLS(token string) *Server {
	s := newLaunch(token)
	s.Server = httptest.NewTLSServer(s.handler(s.launchRoutes()))
	return s
}

// NewConfigStore starts a fake Controller serving the configuration-as-code
// contract, holding what a fresh AWX has: the Default organization and the
// managed credential types.
func NewConfigStore(token string) *Server {
	s := &Server{Token: token, version: "21.14.0"}
	s.initStore()
	s.Server = httptest.NewServer(s.handler(s.storeRoutes()))
	return s
}

// Inject queues a fault.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times == 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
}

// Requests returns "METHOD request-URI" for every request served.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.requests))
	for i, r := range s.requests {
		out[i] = r.method + " " + r.uri
	}
	return out
}

// Writes returns "METHOD path" for every request that was not a GET.
func (s *Server) Writes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.requests {
		if r.method != http.MethodGet {
			out = append(out, r.method+" "+r.path)
		}
	}
	return out
}

// route registers handler for "[METHOD ]path" under each prefix, the
// handler receiving the prefix it was reached by.
func route(mux *http.ServeMux, pattern string, handler func(http.ResponseWriter, *http.Request, string), prefixes ...string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	for _, p := range prefixes {
		mux.HandleFunc(strings.TrimSpace(method+" "+p+path), func(w http.ResponseWriter, r *http.Request) { handler(w, r, p) })
	}
}

// handler wraps a contract's routes in the shared layer: request log,
// product headers, unauthenticated ping, auth, faults, JSON 404.
func (s *Server) handler(mux *http.ServeMux) http.Handler {
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { detail(w, http.StatusNotFound, "Not found.") })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests = append(s.requests, request{r.Method, r.URL.RequestURI(), r.URL.Path})
		w.Header().Set("X-API-Product-Name", "AWX")
		w.Header().Set("X-API-Product-Version", s.version)
		rest, ok := apiRest(r.URL.Path)
		switch {
		case !ok:
			detail(w, http.StatusNotFound, "Not found.")
		case rest == "ping/":
			writeJSON(w, http.StatusOK, map[string]any{"ha": false, "version": s.version, "active_node": "fake"})
		case !s.authenticated(r):
			s.unauthorized(w, r)
		default:
			s.serveWithFaults(w, r, mux, rest)
		}
	})
}

// apiRest is the path after a known API prefix.
func apiRest(path string) (string, bool) {
	for _, p := range []string{controllerPrefix, gatewayPrefix} {
		if rest, ok := strings.CutPrefix(path, p); ok {
			return rest, true
		}
	}
	return "", false
}

// serveWithFaults answers an injected fault, or serves the request; an
// AfterCreate fault serves the launch first, as a proxy that lost the answer.
func (s *Server) serveWithFaults(w http.ResponseWriter, r *http.Request, mux *http.ServeMux, rest string) {
	isLaunch := strings.HasSuffix(rest, "/launch/") && r.Method == http.MethodPost
	f := s.fault(r.Method, rest, isLaunch)
	switch {
	case f == nil:
		mux.ServeHTTP(w, r)
	case f.AfterCreate:
		mux.ServeHTTP(httptest.NewRecorder(), r)
		detail(w, f.Status, http.StatusText(f.Status))
	default:
		detail(w, f.Status, http.StatusText(f.Status))
	}
}

func (s *Server) fault(method, rest string, launch bool) *Fault {
	for _, f := range s.faults {
		if f.Times > 0 && (f.Method == "" || f.Method == method) && strings.Contains(rest, f.PathContains) {
			if f.AfterCreate && !launch {
				continue
			}
			f.Times--
			return f
		}
	}
	return nil
}

// authenticated reports whether the request carries the token, the read-only
// token or the Basic credentials.
func (s *Server) authenticated(r *http.Request) bool {
	ok, _ := s.auth(r)
	return ok
}

func (s *Server) auth(r *http.Request) (ok, readOnly bool) {
	h := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(h, "Bearer "):
		tok := strings.TrimPrefix(h, "Bearer ")
		if s.ReadOnlyToken != "" && tok == s.ReadOnlyToken {
			return true, true
		}
		return s.Token != "" && tok == s.Token, false
	case strings.HasPrefix(h, "Basic "):
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
		if err != nil || s.Username == "" {
			return false, false
		}
		return string(b) == s.Username+":"+s.Password, false
	}
	return false, false
}

// unauthorized answers 401 with the Controller's text for the scheme tried.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", "Bearer realm=api authorization_url=/api/o/authorize/")
	if strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
		detail(w, http.StatusUnauthorized, "Invalid username/password. To establish a login session, visit /api/login/.")
		return
	}
	detail(w, http.StatusUnauthorized, "Authentication credentials were not provided. To establish a login session, visit /api/login/.")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func detail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"detail": msg})
}
