package forwarder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/pkg/event"
	"github.com/ocpv-dr/ocpv-dr/pkg/forwarder"
	"github.com/ocpv-dr/ocpv-dr/pkg/sender"
	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

type received struct {
	event.Payload
	name, uid, rv string
	labels        map[string]string
	managed       bool
}

// sink is an httptest receiver that records payloads whose object name has
// the test's prefix.
type sink struct {
	prefix string
	status atomic.Int32
	posts  atomic.Int32
	mu     sync.Mutex
	ids    map[string]int // every POST by event id, accepted or not
	got    []received
	srv    *httptest.Server
}

func newSink(t *testing.T, prefix string) *sink {
	s := &sink{prefix: prefix, ids: map[string]int{}}
	s.status.Store(200)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p event.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			w.WriteHeader(400)
			return
		}
		var obj struct {
			Metadata struct {
				Name, UID, ResourceVersion string
				Labels                     map[string]string
				ManagedFields              []any
			}
		}
		_ = json.Unmarshal(p.Resource, &obj)
		if !strings.HasPrefix(obj.Metadata.Name, s.prefix) {
			w.WriteHeader(200)
			return
		}
		s.posts.Add(1)
		s.mu.Lock()
		s.ids[p.ID]++
		s.mu.Unlock()
		st := int(s.status.Load())
		if st == 200 {
			s.mu.Lock()
			s.got = append(s.got, received{Payload: p, name: obj.Metadata.Name, uid: obj.Metadata.UID, rv: obj.Metadata.ResourceVersion,
				labels: obj.Metadata.Labels, managed: len(obj.Metadata.ManagedFields) > 0})
			s.mu.Unlock()
		}
		w.WriteHeader(st)
		_, _ = io.WriteString(w, "status "+strconv.Itoa(st))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) events() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

// repeats lists event ids posted more than once.
func (s *sink) repeats() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for id, n := range s.ids {
		if n > 1 {
			out[id] = n
		}
	}
	return out
}

func (s *sink) waitFor(t *testing.T, what string, ok func([]received) bool) []received {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if ev := s.events(); ok(ev) {
			return ev
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; got %d events", what, len(s.events()))
	return nil
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	f      *forwarder.Forwarder
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("forwarder Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("forwarder did not stop")
	}
}

func start(t *testing.T, l *lab.Lab, url string, mod func(*forwarder.Config)) *running {
	t.Helper()
	rc, err := l.Primary.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg := forwarder.Config{ClusterName: "lab-primary", Sender: sender.Config{URL: url, Token: "t", MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, FlushTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	f, err := forwarder.New(cfg, rc, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), f: f}
	go func() { r.done <- f.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !f.Ready() && !cfg.LeaderElect {
		if time.Now().After(deadline) {
			t.Fatal("forwarder not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r
}

func clients(t *testing.T, l *lab.Lab) (*kubernetes.Clientset, dynamic.Interface) {
	t.Helper()
	rc, err := l.Primary.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(rc), dynamic.NewForConfigOrDie(rc)
}

func pv(name string, class string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"gen": "0"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName:       class,
			PersistentVolumeSource: corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "127.0.0.11", Path: "/exports/" + name}},
		},
	}
}

func waitPhase(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, name string, phase corev1.PersistentVolumePhase) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p, err := cs.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); err == nil && p.Status.Phase == phase {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("PV %s never reached %s", name, phase)
}

func relabel(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, name, gen string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"gen":%q}}}`, gen)
	if _, err := cs.CoreV1().PersistentVolumes().Patch(ctx, name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitAdded waits until the sink got name's ADDED: the forwarder keeps one
// pending state per object, so a change made before the ADDED went out
// would replace it.
func waitAdded(t *testing.T, s *sink, name string) {
	t.Helper()
	s.waitFor(t, name+" ADDED", func(ev []received) bool {
		for _, e := range ev {
			if e.name == name && e.Type == event.Added {
				return true
			}
		}
		return false
	})
}

// The receiver gets the exact payload of every PV and VolumeSnapshot change.
func TestPayloadsForChanges(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	cs, dc := clients(t, l)
	s := newSink(t, "fwd-pay-")
	r := start(t, l, s.srv.URL+"/endpoint", nil)
	defer r.stop(t)

	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv("fwd-pay-pv", "nfs-dynamic"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// One pending state per object: a change made before the ADDED went out
	// would replace it. Wait for it, so the sequence below is what was sent.
	waitAdded(t, s, "fwd-pay-pv")
	relabel(ctx, t, cs, "fwd-pay-pv", "1")
	if err := cs.CoreV1().PersistentVolumes().Delete(ctx, "fwd-pay-pv", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	vsRes := dc.Resource(forwarder.SnapshotGVR).Namespace("default")
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
		"metadata": map[string]any{"name": "fwd-pay-snap", "namespace": "default"},
		"spec":     map[string]any{"source": map[string]any{"persistentVolumeClaimName": "disk"}},
	}}
	created, err := vsRes.Create(ctx, vs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitAdded(t, s, "fwd-pay-snap")
	created.Object["status"] = map[string]any{"readyToUse": true}
	if _, err := vsRes.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := vsRes.Delete(ctx, "fwd-pay-snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	evs := s.waitFor(t, "PV and snapshot deletions", func(ev []received) bool {
		n := 0
		for _, e := range ev {
			if e.Type == event.Deleted {
				n++
			}
		}
		return n == 2
	})
	byName := map[string][]received{}
	ids := map[string]bool{}
	for _, e := range evs {
		byName[e.name] = append(byName[e.name], e)
		if ids[e.ID] {
			t.Errorf("duplicate id %s", e.ID)
		}
		ids[e.ID] = true
		if err := e.Payload.Validate(); err != nil {
			t.Errorf("invalid payload: %v", err)
		}
		if e.managed {
			t.Errorf("%s %s still carries managedFields", e.Kind, e.name)
		}
		if e.Cluster != "lab-primary" || e.Initial {
			t.Errorf("cluster=%q initial=%v, want lab-primary/false", e.Cluster, e.Initial)
		}
		if e.ID != event.ID(e.uid, e.rv, e.Type) {
			t.Errorf("id %s is not ID(uid, resourceVersion, type)", e.ID)
		}
	}
	for name, want := range map[string]struct{ kind, apiVersion string }{
		"fwd-pay-pv":   {"PersistentVolume", "v1"},
		"fwd-pay-snap": {"VolumeSnapshot", "snapshot.storage.k8s.io/v1"},
	} {
		seq := byName[name]
		if len(seq) < 3 {
			t.Fatalf("%s: %d events, want ADDED, MODIFIED..., DELETED", name, len(seq))
		}
		if seq[0].Type != event.Added || seq[len(seq)-1].Type != event.Deleted {
			t.Errorf("%s: first %s last %s", name, seq[0].Type, seq[len(seq)-1].Type)
		}
		for _, e := range seq {
			if e.Kind != want.kind || e.APIVersion != want.apiVersion {
				t.Errorf("%s: kind/apiVersion %s/%s", name, e.Kind, e.APIVersion)
			}
			var obj map[string]any
			_ = json.Unmarshal(e.Resource, &obj)
			if obj["apiVersion"] != want.apiVersion || obj["kind"] != want.kind || obj["spec"] == nil {
				t.Errorf("%s: resource is not the whole object: apiVersion=%v kind=%v", name, obj["apiVersion"], obj["kind"])
			}
		}
	}
	sawUpdate := false
	for _, e := range byName["fwd-pay-pv"] {
		if e.Type == event.Modified && e.labels["gen"] == "1" {
			sawUpdate = true
		}
	}
	if !sawUpdate {
		t.Errorf("the label change never arrived as MODIFIED: %+v", byName["fwd-pay-pv"])
	}
}

// A restarted forwarder sends every existing object once with initial=true
// and no MODIFIED for unchanged objects.
func TestRestartSendsInitialStateOnce(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	cs, _ := clients(t, l)
	s := newSink(t, "fwd-rst-")
	for i := 0; i < 3; i++ {
		if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv(fmt.Sprintf("fwd-rst-%d", i), "nfs-dynamic"), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// Let kube-controller-manager finish its status updates first.
	for i := 0; i < 3; i++ {
		waitPhase(ctx, t, cs, fmt.Sprintf("fwd-rst-%d", i), corev1.VolumeAvailable)
	}
	for round := 0; round < 2; round++ {
		before := len(s.events())
		r := start(t, l, s.srv.URL, nil)
		evs := s.waitFor(t, "initial list", func(ev []received) bool { return len(ev) >= before+3 })
		time.Sleep(1500 * time.Millisecond) // a resync or relist would show up now
		r.stop(t)
		evs = s.events()[before:]
		if len(evs) != 3 {
			t.Fatalf("round %d: %d events, want exactly 3 (one per PV)", round, len(evs))
		}
		for _, e := range evs {
			if e.Type != event.Added || !e.Initial {
				t.Errorf("round %d: %s %s initial=%v, want ADDED initial=true", round, e.Type, e.name, e.Initial)
			}
		}
	}
}

// While the receiver is down, 200 changes are coalesced per object; when it
// returns, it gets every object's latest state and every deletion, in order.
func TestOutageLosesNothing(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	cs, _ := clients(t, l)
	s := newSink(t, "fwd-out-")
	r := start(t, l, s.srv.URL, nil)
	defer r.stop(t)
	s.status.Store(503)
	const n = 20
	changes := 0
	for i := 0; i < n; i++ {
		if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv(fmt.Sprintf("fwd-out-%02d", i), "nfs-dynamic"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		changes++
	}
	for gen := 1; gen <= 8; gen++ {
		for i := 0; i < n; i++ {
			relabel(ctx, t, cs, fmt.Sprintf("fwd-out-%02d", i), strconv.Itoa(gen))
			changes++
		}
	}
	deleted := map[string]bool{}
	for i := 0; i < n; i += 4 {
		name := fmt.Sprintf("fwd-out-%02d", i)
		if err := cs.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deleted[name] = true
		changes++
	}
	t.Logf("%d changes made while the receiver answered 503", changes)
	time.Sleep(time.Second)
	s.status.Store(200)
	evs := s.waitFor(t, "every object's final state", func(ev []received) bool {
		last := map[string]received{}
		for _, e := range ev {
			last[e.name] = e
		}
		if len(last) != n {
			return false
		}
		for name, e := range last {
			if deleted[name] != (e.Type == event.Deleted) || (!deleted[name] && e.labels["gen"] != "8") {
				return false
			}
		}
		return true
	})
	// Per-object order: resourceVersions never go backwards, DELETED is last.
	lastRV := map[string]int{}
	for _, e := range evs {
		rv, _ := strconv.Atoi(e.rv)
		if rv < lastRV[e.name] {
			t.Errorf("%s: resourceVersion %d after %d", e.name, rv, lastRV[e.name])
		}
		lastRV[e.name] = rv
	}
	if len(evs) >= changes {
		t.Errorf("received %d events for %d changes: nothing was coalesced", len(evs), changes)
	}
	t.Logf("%d events delivered after the outage for %d changes", len(evs), changes)
}

// A 400 from the endpoint is permanent: the event is not retried.
func TestRejectedEventIsNotRetried(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	cs, _ := clients(t, l)
	s := newSink(t, "fwd-rej-")
	s.status.Store(400)
	r := start(t, l, s.srv.URL, nil)
	defer r.stop(t)
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv("fwd-rej-pv", "nfs-dynamic"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.posts.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if r := s.repeats(); len(r) > 0 {
		t.Fatalf("rejected events were posted again: %v", r)
	}
}

// Two forwarders with leader election: each change is sent once.
func TestLeaderElectionSendsOnce(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	cs, _ := clients(t, l)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ocpdr-le"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	s := newSink(t, "fwd-le-")
	le := func(id string) func(*forwarder.Config) {
		return func(c *forwarder.Config) {
			c.LeaderElect, c.LeaseNamespace, c.Identity = true, "ocpdr-le", id
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 4*time.Second, 3*time.Second, 500*time.Millisecond
		}
	}
	a := start(t, l, s.srv.URL, le("a"))
	defer a.stop(t)
	b := start(t, l, s.srv.URL, le("b"))
	defer b.stop(t)
	deadline := time.Now().Add(20 * time.Second)
	for !a.f.Ready() && !b.f.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("no forwarder became leader")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; i < 5; i++ {
		if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv(fmt.Sprintf("fwd-le-%d", i), "nfs-dynamic"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s.waitFor(t, "5 PVs", func(ev []received) bool { return len(ev) >= 5 })
	time.Sleep(2 * time.Second)
	added := map[string]int{}
	for _, e := range s.events() {
		if e.Type == event.Added {
			added[e.name]++
		}
	}
	for i := 0; i < 5; i++ {
		if c := added[fmt.Sprintf("fwd-le-%d", i)]; c != 1 {
			t.Errorf("fwd-le-%d ADDED sent %d times, want 1", i, c)
		}
	}
	if r := s.repeats(); len(r) > 0 {
		t.Errorf("changes sent more than once: %v", r)
	}
	if a.f.Ready() == b.f.Ready() {
		t.Errorf("both or neither forwarder leads (a=%v b=%v)", a.f.Ready(), b.f.Ready())
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  forwarder.Config
		want []string
	}{
		{"no URL", forwarder.Config{}, []string{"webhook URL is required"}},
		{"bad selector and workers", forwarder.Config{Sender: sender.Config{URL: "http://x"}, PVLabelSelector: "a in (", Workers: 100},
			[]string{"label selector", "workers 100"}},
		{"leader election without namespace", forwarder.Config{Sender: sender.Config{URL: "http://x"}, LeaderElect: true, LeaseNamespace: "", Workers: 1,
			LeaseDuration: time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 3 * time.Second},
			[]string{"lease namespace", "retry-period < renew-deadline < lease-duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil {
				t.Fatal("invalid config accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// Without the VolumeSnapshot CRD the forwarder keeps forwarding PVs, and it
// starts watching snapshots when the CRD appears. (Last in this file: it
// removes and restores the CRD of the package's lab.)
func TestSnapshotCRDAppearsLater(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	cs, dc := clients(t, l)
	crd := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if err := dc.Resource(crd).Delete(ctx, "volumesnapshots.snapshot.storage.k8s.io", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.InstallCRDs(ctx, &l.Primary); err != nil {
			t.Errorf("restore CRDs: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := dc.Resource(crd).Get(ctx, "volumesnapshots.snapshot.storage.k8s.io", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("CRD not deleted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s := newSink(t, "fwd-crd-")
	r := start(t, l, s.srv.URL, func(c *forwarder.Config) { c.CRDPollInterval = 200 * time.Millisecond })
	defer r.stop(t)
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv("fwd-crd-pv", "nfs-dynamic"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "the PV while the snapshot CRD is absent", func(ev []received) bool { return len(ev) >= 1 })
	if err := l.InstallCRDs(ctx, &l.Primary); err != nil {
		t.Fatal(err)
	}
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
		"metadata": map[string]any{"name": "fwd-crd-snap", "namespace": "default"},
		"spec":     map[string]any{"source": map[string]any{"persistentVolumeClaimName": "disk"}},
	}}
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, err := dc.Resource(forwarder.SnapshotGVR).Namespace("default").Create(ctx, vs, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create snapshot after CRD install: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.waitFor(t, "the snapshot once the CRD appeared", func(ev []received) bool {
		for _, e := range ev {
			if e.Kind == event.KindVolumeSnapshot && e.name == "fwd-crd-snap" {
				return true
			}
		}
		return false
	})
}

// With two replicas both are Ready (the standby can take over), so a
// rollout never waits on the standby; /leader and the leader gauge say
// which one leads (issue 18.2).
func TestStandbyIsReady(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	cs, _ := clients(t, l)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ocpdr-ready"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	s := newSink(t, "fwd-ready-")
	addrs := map[string]string{}
	le := func(id string) func(*forwarder.Config) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[id] = ln.Addr().String()
		ln.Close()
		return func(c *forwarder.Config) {
			c.LeaderElect, c.LeaseNamespace, c.LeaseName, c.Identity = true, "ocpdr-ready", "ocpdr-ready", id
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 4*time.Second, 3*time.Second, 500*time.Millisecond
			c.MetricsAddr = addrs[id]
		}
	}
	a := start(t, l, s.srv.URL, le("a"))
	defer a.stop(t)
	b := start(t, l, s.srv.URL, le("b"))
	defer b.stop(t)
	code := func(id, path string) int {
		resp, err := http.Get("http://" + addrs[id] + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := code("a", "/readyz") == 200 && code("b", "/readyz") == 200
		leaders := 0
		for _, id := range []string{"a", "b"} {
			if code(id, "/leader") == 200 {
				leaders++
			}
		}
		if ready && leaders == 1 && (a.f.Ready() || b.f.Ready()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz a=%d b=%d, %d leaders: want both ready and one leader", code("a", "/readyz"), code("b", "/readyz"), leaders)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if a.f.Leading() == b.f.Leading() {
		t.Errorf("Leading: a=%v b=%v, want exactly one", a.f.Leading(), b.f.Leading())
	}
}
