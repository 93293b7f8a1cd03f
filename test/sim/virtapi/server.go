// Package virtapi simulates the part of KubeVirt's virt-api that ocpv-dr
// calls: the subresources.kubevirt.io/v1 freeze and unfreeze subresources of
// VirtualMachineInstances. It is an HTTPS server registered in the lab's
// primary kube-apiserver as an aggregated API (an APIService), so clients
// reach it through the real API server with their usual credentials.
//
// A VMI is its VM (the lab runs no VMIs): the VM must be Running (the
// simulated virt-controller's status.printableStatus) and have a guest agent
// (annotation ocpv-dr.io/sim-guest-agent not "false"). A freeze freezes
// every simulated guest disk writer of the VM and answers once they are all
// frozen; the unfreezeTimeout watchdog thaws them by itself, as
// virt-launcher does.
package virtapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
)

// The API this server answers.
const (
	Group   = "subresources.kubevirt.io"
	Version = "v1"
)

// AnnotationGuestAgent set to "false" on a VM simulates a guest without a
// connected guest agent: freeze and unfreeze are refused (409).
const AnnotationGuestAgent = "ocpv-dr.io/sim-guest-agent"

// gvrVM is the lab's VirtualMachine CRD; a VMI is looked up as its VM.
var gvrVM = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}

// vmiResource names the VMI in Status errors, as KubeVirt does.
var vmiResource = schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachineinstance"}

// Guests gives the simulated guest disk writers of a VM (none when the VM
// has none).
type Guests interface {
	Writers(namespace, name string) []*guest.Writer
}

// Options configure a Server.
type Options struct {
	VMs    dynamic.Interface // the primary cluster, where the VMs are
	Guests Guests            // nil: no VM has a writer
	// Addr is the listen address (default 127.0.0.1:0: a free port on the
	// loopback address the APIService's ExternalName "localhost" reaches).
	Addr string
	Log  *zap.Logger
}

// Server is a running simulated virt-api.
type Server struct {
	o    Options
	log  *zap.Logger
	ln   net.Listener
	http *http.Server
	done chan struct{}

	mu  sync.Mutex
	vms map[string]*vmState // by namespace/name

	regMu sync.Mutex
	reg   *registration
}

// Start listens and serves until Close.
func Start(o Options) (*Server, error) {
	if o.VMs == nil {
		return nil, errors.New("virtapi: Options.VMs is required")
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	cert, err := selfSigned()
	if err != nil {
		return nil, fmt.Errorf("virtapi: %w", err)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("virtapi: listen: %w", err)
	}
	s := &Server{o: o, log: o.Log, ln: ln, done: make(chan struct{}), vms: map[string]*vmState{}}
	s.http = &http.Server{
		Handler:           s.routes(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		defer close(s.done)
		if err := s.http.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("virtapi: serve", zap.Error(err))
		}
	}()
	s.log.Info("simulated virt-api listening", zap.String("url", s.URL()))
	return s, nil
}

// Port is the port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// URL is the server's base URL (https, self-signed).
func (s *Server) URL() string { return "https://" + s.ln.Addr().String() }

// Close stops serving and the unfreeze watchdogs; frozen guests stay frozen
// (their writers belong to the caller).
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// The aggregator keeps its connections open: close them.
		err = s.http.Close()
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, vm := range s.vms {
		vm.stopWatchdog()
	}
	return err
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	prefix := "/apis/" + Group + "/" + Version
	mux.HandleFunc("GET /apis", s.apiGroupList)
	mux.HandleFunc("GET /apis/"+Group, s.apiGroup)
	mux.HandleFunc("GET "+prefix, s.apiResourceList)
	mux.HandleFunc("PUT "+prefix+"/namespaces/{namespace}/virtualmachineinstances/{name}/freeze", s.freeze)
	mux.HandleFunc("PUT "+prefix+"/namespaces/{namespace}/virtualmachineinstances/{name}/unfreeze", s.unfreeze)
	mux.HandleFunc(prefix+"/namespaces/{namespace}/virtualmachineinstances/{name}/{subresource}", methodNotAllowed)
	for _, p := range []string{"/healthz", "/readyz", "/livez"} {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	}
	mux.HandleFunc("GET /openapi/v2", s.openAPIv2)
	mux.HandleFunc("GET /openapi/v3", s.openAPIv3)
	mux.HandleFunc("GET /debug/freezes", s.debugFreezes)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
	})
	return s.logged(mux)
}

// methodNotAllowed answers the subresources' other methods (PUT only).
func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	sub := r.PathValue("subresource")
	if sub != "freeze" && sub != "unfreeze" {
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{Group: Group, Resource: "virtualmachineinstances/" + sub}, r.PathValue("name")))
		return
	}
	w.Header().Set("Allow", http.MethodPut)
	writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: Group, Resource: "virtualmachineinstances/" + sub}, r.Method))
}

func (s *Server) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		start := time.Now()
		h.ServeHTTP(rec, r)
		s.log.Debug("virtapi request", zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.String("user", r.Header.Get("X-Remote-User")), zap.Int("code", rec.code), zap.Duration("took", time.Since(start)))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// writeStatus answers a Kubernetes Status error.
func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	writeJSON(w, int(st.Code), st)
}

var groupVersion = metav1.GroupVersionForDiscovery{GroupVersion: Group + "/" + Version, Version: Version}

func apiGroup() metav1.APIGroup {
	return metav1.APIGroup{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:     Group, Versions: []metav1.GroupVersionForDiscovery{groupVersion}, PreferredVersion: groupVersion,
	}
}

func (s *Server) apiGroupList(w http.ResponseWriter, _ *http.Request) {
	g := apiGroup()
	g.TypeMeta = metav1.TypeMeta{}
	writeJSON(w, http.StatusOK, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{g}})
}

func (s *Server) apiGroup(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, apiGroup())
}

// apiResourceList lists the two subresources as virt-api does (namespaced,
// updated with PUT).
func (s *Server) apiResourceList(w http.ResponseWriter, _ *http.Request) {
	res := func(name string) metav1.APIResource {
		return metav1.APIResource{Name: name, Namespaced: true, Kind: "VirtualMachineInstance", Verbs: metav1.Verbs{"update"}}
	}
	writeJSON(w, http.StatusOK, metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: Group + "/" + Version,
		APIResources: []metav1.APIResource{res("virtualmachineinstances/freeze"), res("virtualmachineinstances/unfreeze")},
	})
}

func (s *Server) openAPIv2(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"swagger": "2.0", "info": map[string]any{"title": "KubeVirt (ocpv-dr lab simulation)", "version": Version}, "paths": map[string]any{}})
}

func (s *Server) openAPIv3(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"paths": map[string]any{}})
}

func (s *Server) debugFreezes(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Freezes())
}
