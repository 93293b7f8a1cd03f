// Package forwarder watches PersistentVolumes and VolumeSnapshots and POSTs
// every change as an event.Payload to a webhook (the receiver, or any
// ansible.eda.webhook / AAP Event Stream), at least once, coalescing per
// object while the endpoint is down.
package forwarder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/ocpv-dr/ocpv-dr/pkg/event"
	"github.com/ocpv-dr/ocpv-dr/pkg/sender"
)

// SnapshotGVR is the VolumeSnapshot resource the forwarder watches.
var SnapshotGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}

// Config holds everything the forwarder needs besides the clients.
type Config struct {
	ClusterName        string
	Sender             sender.Config
	PVLabelSelector    string
	StorageClasses     []string // empty: every class
	SnapshotNamespaces []string // empty: every namespace
	Workers            int
	FlushTimeout       time.Duration
	CRDPollInterval    time.Duration
	MetricsAddr        string

	LeaderElect bool
	// LeaseNamespace is the forwarder's own namespace: it holds the Lease
	// and the tombstone ConfigMap (default POD_NAMESPACE; empty: deletions
	// are not kept across restarts).
	LeaseNamespace string
	LeaseName      string
	Identity       string
	LeaseDuration  time.Duration
	RenewDeadline  time.Duration
	RetryPeriod    time.Duration

	// TombstoneConfigMap keeps the deletions the receiver has not
	// acknowledged across restarts and handovers (default LeaseName +
	// "-tombstones"); MaxTombstones bounds it (default 1000, oldest dropped).
	TombstoneConfigMap string
	MaxTombstones      int
}

// Defaults fills unset fields. The lease timings are OpenShift's
// recommended values: a one-minute API server outage does not drop the lease.
func (c *Config) Defaults() {
	if c.ClusterName == "" {
		c.ClusterName = "primary"
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 10 * time.Second
	}
	if c.CRDPollInterval == 0 {
		c.CRDPollInterval = 30 * time.Second
	}
	if c.LeaseName == "" {
		c.LeaseName = "ocpdr-forwarder"
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = os.Getenv("POD_NAMESPACE")
	}
	if c.Identity == "" {
		h, _ := os.Hostname()
		c.Identity = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 137 * time.Second
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = 107 * time.Second
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = 26 * time.Second
	}
	if c.TombstoneConfigMap == "" {
		c.TombstoneConfigMap = c.LeaseName + "-tombstones"
	}
	if c.MaxTombstones == 0 {
		c.MaxTombstones = 1000
	}
}

// Validate lists every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := c.Sender.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.PVLabelSelector != "" {
		if _, err := labels.Parse(c.PVLabelSelector); err != nil {
			errs = append(errs, fmt.Errorf("PV label selector: %w", err))
		}
	}
	if c.Workers < 1 || c.Workers > 64 {
		errs = append(errs, fmt.Errorf("workers %d out of range 1..64", c.Workers))
	}
	if c.MaxTombstones < 0 || c.MaxTombstones > 10000 {
		errs = append(errs, fmt.Errorf("max tombstones %d out of range 1..10000", c.MaxTombstones))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("metrics address: %w", err))
		}
	}
	if c.LeaderElect {
		if c.LeaseNamespace == "" {
			errs = append(errs, errors.New("leader election needs a lease namespace (--lease-namespace or POD_NAMESPACE)"))
		}
		if !(c.RetryPeriod < c.RenewDeadline && c.RenewDeadline < c.LeaseDuration) {
			errs = append(errs, errors.New("leader election timings: need retry-period < renew-deadline < lease-duration"))
		}
	}
	return errors.Join(errs...)
}

// Registry is where metrics go and are served from.
type Registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Forwarder is one running watcher.
type Forwarder struct {
	cfg     Config
	rest    *rest.Config
	cs      kubernetes.Interface
	dyn     dynamic.Interface
	disc    discovery.DiscoveryInterface
	log     *zap.Logger
	reg     Registry
	m       *metrics
	send    *sender.Sender
	pend    *pending
	tomb    *tombstones
	ready   atomic.Bool
	leading atomic.Bool
	standby standbyCheck
	started chan struct{}
}

// New builds a Forwarder for the cluster restCfg points at.
func New(cfg Config, restCfg *rest.Config, log *zap.Logger, reg Registry) (*Forwarder, error) {
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	f, err := NewForClients(cfg, cs, dyn, log, reg)
	if err != nil {
		return nil, err
	}
	f.rest = restCfg
	return f, nil
}

// NewForClients builds a Forwarder on the given clients (fakes in tests).
func NewForClients(cfg Config, cs kubernetes.Interface, dyn dynamic.Interface, log *zap.Logger, reg Registry) (*Forwarder, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("forwarder config: %w", err)
	}
	sm, err := sender.NewMetrics(reg, "forwarder")
	if err != nil {
		return nil, err
	}
	snd, err := sender.New(cfg.Sender, log, sm)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{cfg: cfg, cs: cs, dyn: dyn, disc: cs.Discovery(), log: log, reg: reg, send: snd, pend: newPending(), started: make(chan struct{})}
	if f.m, err = newMetrics(reg, f.pend.depth, func() int { return f.tomb.len() }); err != nil {
		return nil, err
	}
	leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ocpdr", Subsystem: "forwarder", Name: "leader",
		Help: "1 while this instance leads (holds the lease, or runs without leader election), else 0."}, func() float64 {
		if f.leading.Load() {
			return 1
		}
		return 0
	})
	if err := reg.Register(leader); err != nil {
		return nil, fmt.Errorf("forwarder metrics: %w", err)
	}
	f.tomb = newTombstones(cs, cfg.LeaseNamespace, cfg.TombstoneConfigMap, cfg.MaxTombstones, log, f.m)
	f.tomb.adopt = f.resend
	return f, nil
}

// Ready reports whether the informers have synced.
func (f *Forwarder) Ready() bool { return f.ready.Load() }

// Run serves health and metrics, then watches (as leader when configured)
// until ctx ends, and flushes pending events for a bounded time.
func (f *Forwarder) Run(ctx context.Context) error {
	var srvErr chan error
	if f.cfg.MetricsAddr != "" {
		srv, ln, err := f.server()
		if err != nil {
			return err
		}
		srvErr = make(chan error, 1)
		go func() { srvErr <- srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	if !f.cfg.LeaderElect {
		f.leading.Store(true)
		defer f.leading.Store(false)
		return f.watch(ctx)
	}
	return f.runLeaderElected(ctx)
}

func (f *Forwarder) server() (*http.Server, net.Listener, error) {
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	r.Get("/readyz", f.readyz)
	r.Get("/leader", f.leaderz)
	r.Handle("/metrics", promhttp.HandlerFor(f.reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", f.cfg.MetricsAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listener: %w", err)
	}
	f.log.Info("serving health and metrics", zap.String("addr", ln.Addr().String()))
	return &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}, ln, nil
}

func (f *Forwarder) runLeaderElected(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: f.cfg.LeaseNamespace, Name: f.cfg.LeaseName},
		Client:     f.cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: f.cfg.Identity},
	}
	var (
		watchErr error
		term     sync.Once // taken by the term, or by Run returning first
		termDone = make(chan struct{})
	)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   f.cfg.LeaseDuration,
		RenewDeadline:   f.cfg.RenewDeadline,
		RetryPeriod:     f.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            f.cfg.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(c context.Context) {
				leading := false
				term.Do(func() { leading = true })
				if !leading {
					return // Run already returned
				}
				defer close(termDone)
				f.leading.Store(true)
				defer f.leading.Store(false)
				f.log.Info("became leader", zap.String("identity", f.cfg.Identity))
				watchErr = f.watch(c)
				cancel()
			},
			OnStoppedLeading: func() {
				f.log.Info("not leading", zap.String("identity", f.cfg.Identity))
				cancel()
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	le.Run(lctx)
	// client-go starts the term in a goroutine: wait for its drain (pending
	// events, tombstone write) before the process may exit.
	term.Do(func() { close(termDone) })
	<-termDone
	if ctx.Err() == nil && watchErr == nil {
		return errors.New("lost leadership")
	}
	return watchErr
}

// watch runs the informers and the senders until ctx ends.
func (f *Forwarder) watch(ctx context.Context) error {
	sendCtx, stopSending := context.WithCancel(context.Background())
	defer stopSending()
	var wg sync.WaitGroup
	for i := 0; i < f.cfg.Workers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); f.worker(sendCtx) }()
	}
	f.resendTombstones(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); f.tomb.run(sendCtx) }()

	factory := informers.NewSharedInformerFactoryWithOptions(f.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = f.cfg.PVLabelSelector
	}))
	pvInf := factory.Core().V1().PersistentVolumes().Informer()
	if err := pvInf.SetTransform(transformPV); err != nil {
		return fmt.Errorf("PV transform: %w", err)
	}
	_ = pvInf.SetWatchErrorHandlerWithContext(f.watchError("PersistentVolume"))
	if _, err := pvInf.AddEventHandler(f.handler(event.KindPersistentVolume, "v1", f.keepPV)); err != nil {
		return fmt.Errorf("PV handler: %w", err)
	}
	factory.Start(ctx.Done())

	snapSynced := make(chan struct{})
	go f.watchSnapshots(ctx, snapSynced)

	if !cache.WaitForCacheSync(ctx.Done(), pvInf.HasSynced) {
		factory.Shutdown()
		return f.drain(ctx, &wg, stopSending)
	}
	f.log.Info("PersistentVolume informer synced", zap.String("labelSelector", f.cfg.PVLabelSelector), zap.Strings("storageClasses", f.cfg.StorageClasses))
	select {
	case <-snapSynced:
	case <-ctx.Done():
	}
	f.ready.Store(ctx.Err() == nil)
	<-ctx.Done()
	f.ready.Store(false)
	factory.Shutdown()
	return f.drain(ctx, &wg, stopSending)
}

// drain gives pending events FlushTimeout to go out, stops the workers and
// writes the tombstones of the deletions still unacknowledged.
func (f *Forwarder) drain(_ context.Context, wg *sync.WaitGroup, stopSending context.CancelFunc) error {
	deadline := time.Now().Add(f.cfg.FlushTimeout)
	for f.pend.depth() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stopSending()
	f.pend.shutdown()
	wg.Wait()
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := f.tomb.flush(fctx)
	f.logUndelivered(f.pend.depth(), f.pend.count(event.Deleted), f.tomb.persistent() && err == nil, err)
	return nil
}

// logUndelivered says what becomes of the events still pending at shutdown:
// objects that exist are listed again (initial state) by the next instance;
// deletions survive only in the tombstone ConfigMap.
func (f *Forwarder) logUndelivered(objects, deletions int, durable bool, err error) {
	if objects == 0 {
		return
	}
	fields := []zap.Field{zap.Int("objects", objects), zap.Int("deletions", deletions),
		zap.String("configMap", f.cfg.LeaseNamespace+"/"+f.cfg.TombstoneConfigMap)}
	switch {
	case deletions == 0:
		f.log.Warn("shutting down with undelivered events: the next instance sends these objects again as initial state", fields...)
		return
	case durable:
		f.log.Warn("shutting down with undelivered events: the next instance sends existing objects as initial state and the deletions from the tombstone ConfigMap", fields...)
		return
	}
	f.log.Error("shutting down with undelivered events: existing objects are sent again as initial state after restart, but these deletions are lost (tombstone ConfigMap off or not written)",
		append(fields, zap.Error(err))...)
}

// resendTombstones queues again the deletions a previous instance (or term)
// left unacknowledged.
func (f *Forwarder) resendTombstones(ctx context.Context) {
	list := f.tomb.load(ctx)
	if len(list) == 0 {
		return
	}
	f.log.Info("re-sending deletions not acknowledged before the last restart or handover", zap.Int("deletions", len(list)),
		zap.String("configMap", f.cfg.LeaseNamespace+"/"+f.cfg.TombstoneConfigMap))
	for _, t := range list {
		f.resend(t)
	}
}

// resend queues a tombstone's DELETED event unless something newer waits.
func (f *Forwarder) resend(t Tombstone) {
	f.pend.putIfAbsent(t.Key, item{payload: t.Payload, typ: event.Deleted})
}

// watchSnapshots starts the VolumeSnapshot informer once the CRD is served,
// polling discovery until then. synced is closed when it has synced, or at
// once when the CRD is absent (PVs do not wait for it).
func (f *Forwarder) watchSnapshots(ctx context.Context, synced chan struct{}) {
	once := sync.Once{}
	markSynced := func() { once.Do(func() { close(synced) }) }
	logged := false
	for !f.snapshotsServed() {
		if !logged {
			f.log.Info("VolumeSnapshot CRD not installed: forwarding PVs only, will start watching snapshots when it appears", zap.Duration("poll", f.cfg.CRDPollInterval))
			logged = true
		}
		markSynced()
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.cfg.CRDPollInterval):
		}
	}
	fac := dynamicinformer.NewDynamicSharedInformerFactory(f.dyn, 0)
	inf := fac.ForResource(SnapshotGVR).Informer()
	_ = inf.SetTransform(stripManagedFields)
	_ = inf.SetWatchErrorHandlerWithContext(f.watchError("VolumeSnapshot"))
	if _, err := inf.AddEventHandler(f.handler(event.KindVolumeSnapshot, SnapshotGVR.GroupVersion().String(), f.keepSnapshot)); err != nil {
		f.log.Error("VolumeSnapshot handler", zap.Error(err))
		markSynced()
		return
	}
	fac.Start(ctx.Done())
	if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		f.log.Info("VolumeSnapshot informer synced", zap.Strings("namespaces", f.cfg.SnapshotNamespaces))
	}
	markSynced()
	<-ctx.Done()
	fac.Shutdown()
}

func (f *Forwarder) snapshotsServed() bool {
	rl, err := f.disc.ServerResourcesForGroupVersion(SnapshotGVR.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, r := range rl.APIResources {
		if r.Name == SnapshotGVR.Resource {
			return true
		}
	}
	return false
}

func (f *Forwarder) watchError(kind string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		f.m.watchRestarts.WithLabelValues(kind).Inc()
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}
}

func (f *Forwarder) keepPV(obj any) bool {
	if len(f.cfg.StorageClasses) == 0 {
		return true
	}
	pv, ok := obj.(*corev1.PersistentVolume)
	return ok && slices.Contains(f.cfg.StorageClasses, pv.Spec.StorageClassName)
}

func (f *Forwarder) keepSnapshot(obj any) bool {
	if len(f.cfg.SnapshotNamespaces) == 0 {
		return true
	}
	m, err := meta.Accessor(obj)
	return err == nil && slices.Contains(f.cfg.SnapshotNamespaces, m.GetNamespace())
}

func (f *Forwarder) handler(kind, apiVersion string, keep func(any) bool) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			f.enqueue(kind, apiVersion, event.Added, obj, initial, keep)
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, err1 := meta.Accessor(oldObj)
			n, err2 := meta.Accessor(newObj)
			if err1 == nil && err2 == nil && o.GetResourceVersion() == n.GetResourceVersion() {
				return // resync or relist of an unchanged object
			}
			f.enqueue(kind, apiVersion, event.Modified, newObj, false, keep)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			f.enqueue(kind, apiVersion, event.Deleted, obj, false, keep)
		},
	}
}

func (f *Forwarder) enqueue(kind, apiVersion, typ string, obj any, initial bool, keep func(any) bool) {
	if obj == nil || !keep(obj) {
		return
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		f.m.failures.WithLabelValues("encode").Inc()
		f.log.Error("object without metadata", zap.String("kind", kind), zap.Error(err))
		return
	}
	f.m.observed.WithLabelValues(kind, typ).Inc()
	res, err := json.Marshal(obj)
	if err != nil {
		f.m.failures.WithLabelValues("encode").Inc()
		f.log.Error("encode object", zap.String("kind", kind), zap.String("name", m.GetName()), zap.Error(err))
		return
	}
	p := event.Payload{
		Schema: event.Schema, ID: event.ID(string(m.GetUID()), m.GetResourceVersion(), typ),
		Type: typ, Kind: kind, APIVersion: apiVersion, Cluster: f.cfg.ClusterName,
		ObservedAt: time.Now().UTC(), Initial: initial, Resource: res,
	}
	body, err := json.Marshal(p)
	if err != nil {
		f.m.failures.WithLabelValues("encode").Inc()
		return
	}
	key := kind + "/" + string(m.GetUID())
	if typ == event.Deleted {
		f.tomb.add(Tombstone{Key: key, Kind: kind, Cluster: f.cfg.ClusterName, UID: string(m.GetUID()), Namespace: m.GetNamespace(),
			Name: m.GetName(), DeletedAt: p.ObservedAt, Payload: body})
	}
	if f.pend.put(key, item{payload: body, typ: typ}) {
		f.m.coalesced.Inc()
	}
}

func (f *Forwarder) worker(ctx context.Context) {
	for {
		key, it, ok := f.pend.next()
		if !ok {
			return
		}
		err := f.send.Send(ctx, it.payload)
		var perm *sender.PermanentError
		switch {
		case err == nil:
			f.m.sent.Inc()
			f.m.lastSuccess.SetToCurrentTime()
			f.acknowledged(key, it)
		case errors.As(err, &perm):
			f.m.failures.WithLabelValues("rejected").Inc()
			f.log.Error("endpoint rejected an event; not retried", zap.String("object", key), zap.String("type", it.typ),
				zap.String("reason", perm.Reason), zap.Int("status", perm.Status), zap.String("response", perm.Body))
			if perm.Reason != sender.ReasonRedirect {
				// The receiver judged the event; a redirect is fixed in
				// --webhook-url, and the restart re-sends the tombstone.
				f.acknowledged(key, it)
			}
		default:
			// Shutting down: keep it for the count of undelivered events.
			f.pend.requeue(key, it)
			f.m.failures.WithLabelValues("shutdown").Inc()
		}
		f.pend.done(key)
	}
}

// acknowledged forgets the tombstone of a deletion the receiver answered.
func (f *Forwarder) acknowledged(key string, it item) {
	if it.typ == event.Deleted {
		f.tomb.remove(key)
	}
}

func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// transformPV strips managedFields and restores the type information that
// typed informers drop, so the forwarded resource is a complete object.
func transformPV(obj any) (any, error) {
	if pv, ok := obj.(*corev1.PersistentVolume); ok {
		pv.ManagedFields = nil
		pv.APIVersion, pv.Kind = "v1", "PersistentVolume"
		return pv, nil
	}
	return stripManagedFields(obj)
}
