package forwarder_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ocpv-dr/ocpv-dr/pkg/event"
	"github.com/ocpv-dr/ocpv-dr/pkg/forwarder"
	"github.com/ocpv-dr/ocpv-dr/pkg/sender"
)

// These tests run against client-go's fake clientset (no lab): one fake API
// shared by the forwarder instances a test starts one after the other.

const tombNS, tombCM = "ocpv-dr", "ocpdr-forwarder-tombstones"

type fakeRun struct {
	*running
	reg *prometheus.Registry
}

func startFake(t *testing.T, cs *fake.Clientset, url string, mod func(*forwarder.Config)) fakeRun {
	t.Helper()
	cfg := forwarder.Config{ClusterName: "fake-primary", LeaseNamespace: tombNS, FlushTimeout: 300 * time.Millisecond, CRDPollInterval: time.Hour,
		Sender: sender.Config{URL: url, Token: "t", MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	f, err := forwarder.NewForClients(cfg, cs, nil, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), f: f}
	go func() { r.done <- f.Run(ctx) }()
	if !cfg.LeaderElect {
		eventually(t, "forwarder ready", f.Ready)
	}
	return fakeRun{running: r, reg: reg}
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fakePV(name string) *corev1.PersistentVolume {
	p := pv(name, "nfs-dynamic")
	p.UID = types.UID("uid-" + name)
	return p
}

// storedTombstones decodes the tombstone ConfigMap (nil when absent).
func storedTombstones(t *testing.T, cs *fake.Clientset) []forwarder.Tombstone {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(tombNS).Get(context.Background(), tombCM, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(cm.BinaryData[forwarder.TombstoneKey]))
	if err != nil {
		t.Fatalf("tombstone ConfigMap: %v", err)
	}
	raw, _ := io.ReadAll(zr)
	var list []forwarder.Tombstone
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("tombstone ConfigMap: %v", err)
	}
	return list
}

func tombstoneNames(t *testing.T, cs *fake.Clientset) []string {
	t.Helper()
	var names []string
	for _, tb := range storedTombstones(t, cs) {
		names = append(names, tb.Name)
	}
	slices.Sort(names)
	return names
}

func (s *sink) deleted(uid string) []received {
	var out []received
	for _, e := range s.events() {
		if e.Type == event.Deleted && e.uid == uid {
			out = append(out, e)
		}
	}
	return out
}

// deletePV deletes a PV and returns the id of its DELETED event.
func deletePV(t *testing.T, cs *fake.Clientset, name string) string {
	t.Helper()
	p, err := cs.CoreV1().PersistentVolumes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().PersistentVolumes().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	return event.ID(string(p.UID), p.ResourceVersion, event.Deleted)
}

// A deletion the receiver did not acknowledge (503 until shutdown) is kept
// in the tombstone ConfigMap and re-sent, with the same event id and the
// last known object, by the next instance; the acknowledgement removes it.
func TestDeletionResentAfterRestart(t *testing.T) {
	p := fakePV("tomb-rst-pv")
	cs := fake.NewClientset(p)
	s := newSink(t, "tomb-rst-")
	s.status.Store(503)
	a := startFake(t, cs, s.srv.URL, nil)
	id := deletePV(t, cs, p.Name) // pending behind its ADDED, retried on 503
	eventually(t, "the tombstone written while the deletion is pending", func() bool {
		return slices.Equal(tombstoneNames(t, cs), []string{p.Name})
	})
	a.stop(t)
	if got := storedTombstones(t, cs); len(got) != 1 || got[0].UID != string(p.UID) || got[0].Kind != event.KindPersistentVolume || got[0].Cluster != "fake-primary" {
		t.Fatalf("tombstones after shutdown: %+v", got)
	}

	s.status.Store(200)
	b := startFake(t, cs, s.srv.URL, nil)
	defer b.stop(t)
	eventually(t, "the deletion re-sent by the new instance", func() bool { return len(s.deleted(string(p.UID))) == 1 })
	e := s.deleted(string(p.UID))[0]
	if e.ID != id || e.name != p.Name || e.Cluster != "fake-primary" {
		t.Errorf("re-sent deletion id=%s name=%s cluster=%s, want id %s of %s", e.ID, e.name, e.Cluster, id, p.Name)
	}
	eventually(t, "the tombstone removed after the acknowledgement", func() bool { return len(storedTombstones(t, cs)) == 0 })
}

// With leader election, the instance that takes over the Lease re-sends the
// deletion the previous leader could not deliver.
func TestDeletionResentAfterHandover(t *testing.T) {
	p := fakePV("tomb-le-pv")
	cs := fake.NewClientset(p)
	s := newSink(t, "tomb-le-")
	s.status.Store(503)
	le := func(id string) func(*forwarder.Config) {
		return func(c *forwarder.Config) {
			c.LeaderElect, c.Identity = true, id
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 2*time.Second, 1500*time.Millisecond, 100*time.Millisecond
		}
	}
	a := startFake(t, cs, s.srv.URL, le("a"))
	eventually(t, "a leads", a.f.Ready)
	b := startFake(t, cs, s.srv.URL, le("b"))
	defer b.stop(t)
	deletePV(t, cs, p.Name)
	eventually(t, "the tombstone written", func() bool { return len(storedTombstones(t, cs)) == 1 })
	if b.f.Ready() {
		t.Fatal("b leads while a does")
	}
	a.stop(t) // still 503: a cannot deliver it
	s.status.Store(200)
	eventually(t, "b takes over", b.f.Ready)
	eventually(t, "the deletion re-sent by the new leader", func() bool { return len(s.deleted(string(p.UID))) >= 1 })
	eventually(t, "the tombstone removed after the acknowledgement", func() bool { return len(storedTombstones(t, cs)) == 0 })
}

// The list is bounded: beyond MaxTombstones the oldest are dropped (counted),
// while every deletion is still delivered by the running instance.
func TestTombstonesBounded(t *testing.T) {
	cs := fake.NewClientset()
	s := newSink(t, "tomb-max-")
	s.status.Store(503)
	var names []string
	for i := 0; i < 5; i++ {
		p := fakePV(fmt.Sprintf("tomb-max-%d", i))
		if _, err := cs.CoreV1().PersistentVolumes().Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		names = append(names, p.Name)
	}
	r := startFake(t, cs, s.srv.URL, func(c *forwarder.Config) { c.MaxTombstones = 3 })
	defer r.stop(t)
	for i, n := range names {
		deletePV(t, cs, n)
		eventually(t, "the tombstone of "+n, func() bool { return len(storedTombstones(t, cs)) == min(i+1, 3) })
	}
	eventually(t, "the 3 newest tombstones stored", func() bool { return slices.Equal(tombstoneNames(t, cs), names[2:]) })
	if got := gathered(t, r.reg, "ocpdr_forwarder_tombstones_dropped_total", "limit"); got != 2 {
		t.Errorf("tombstones_dropped_total{reason=limit} = %v, want 2", got)
	}
	s.status.Store(200)
	eventually(t, "all 5 deletions delivered", func() bool {
		n := 0
		for _, e := range s.events() {
			if e.Type == event.Deleted {
				n++
			}
		}
		return n == 5
	})
	eventually(t, "the tombstones removed", func() bool { return len(storedTombstones(t, cs)) == 0 })
}

// A tombstone list another instance wrote after this one started (a late
// write of the previous leader) is merged, not overwritten, and its
// deletions are sent.
func TestTombstonesOfAnotherInstanceMerged(t *testing.T) {
	cs := fake.NewClientset(fakePV("tomb-mrg-live"))
	s := newSink(t, "tomb-mrg-")
	r := startFake(t, cs, s.srv.URL, nil)
	defer r.stop(t)
	gone := fakePV("tomb-mrg-gone")
	gone.APIVersion, gone.Kind = "v1", "PersistentVolume"
	res, _ := json.Marshal(gone)
	body, _ := json.Marshal(event.Payload{Schema: event.Schema, ID: event.ID(string(gone.UID), "7", event.Deleted), Type: event.Deleted,
		Kind: event.KindPersistentVolume, APIVersion: "v1", Cluster: "fake-primary", ObservedAt: time.Now().UTC(), Resource: res})
	writeTombstones(t, cs, []forwarder.Tombstone{{Key: "PersistentVolume/" + string(gone.UID), Kind: event.KindPersistentVolume,
		Cluster: "fake-primary", UID: string(gone.UID), Name: gone.Name, DeletedAt: time.Now().UTC(), Payload: body}})
	deletePV(t, cs, "tomb-mrg-live")
	eventually(t, "both deletions delivered", func() bool {
		return len(s.deleted("uid-tomb-mrg-live")) == 1 && len(s.deleted(string(gone.UID))) == 1
	})
	eventually(t, "the tombstones removed", func() bool { return len(storedTombstones(t, cs)) == 0 })
}

func writeTombstones(t *testing.T, cs *fake.Clientset, list []forwarder.Tombstone) {
	t.Helper()
	raw, _ := json.Marshal(list)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: tombCM, Namespace: tombNS}, BinaryData: map[string][]byte{forwarder.TombstoneKey: buf.Bytes()}}
	if _, err := cs.CoreV1().ConfigMaps(tombNS).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func gathered(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{reason=%q} not exported", name, reason)
	return 0
}

func (s *sink) posted(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id] > 0
}

// A final answer forgets the tombstone, except a redirect: that is fixed in
// --webhook-url, and the restart then re-sends the deletion.
func TestFinalAnswerForgetsTombstoneExceptRedirect(t *testing.T) {
	for _, tc := range []struct {
		status int
		keep   int
	}{{400, 0}, {413, 0}, {307, 1}} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			p := fakePV("tomb-fin-pv")
			cs := fake.NewClientset(p)
			s := newSink(t, "tomb-fin-")
			s.status.Store(int32(tc.status))
			r := startFake(t, cs, s.srv.URL, nil)
			defer r.stop(t)
			id := deletePV(t, cs, p.Name)
			eventually(t, "the DELETED event answered", func() bool { return s.posted(id) })
			eventually(t, "the tombstone list settled", func() bool { return len(storedTombstones(t, cs)) == tc.keep })
			time.Sleep(200 * time.Millisecond)
			if n := len(storedTombstones(t, cs)); n != tc.keep {
				t.Errorf("%d tombstones after HTTP %d, want %d", n, tc.status, tc.keep)
			}
		})
	}
}

// With leader election, Run returns only after the term's drain (pending
// events get FlushTimeout, the tombstones their final write), not as soon as
// the Lease is released.
func TestLeaderElectedRunWaitsForDrain(t *testing.T) {
	cs := fake.NewClientset(fakePV("tomb-drn-0"), fakePV("tomb-drn-1")) // one in flight, one queued
	s := newSink(t, "tomb-drn-")
	s.status.Store(503)
	r := startFake(t, cs, s.srv.URL, func(c *forwarder.Config) {
		c.LeaderElect, c.Identity, c.FlushTimeout, c.Workers = true, "a", time.Second, 1
		c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 2*time.Second, 1500*time.Millisecond, 100*time.Millisecond
	})
	eventually(t, "a leads", r.f.Ready)
	eventually(t, "the ADDED event tried", func() bool { return s.posts.Load() > 0 })
	start := time.Now()
	r.stop(t)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("Run returned %v after cancel, before the 1s flush timeout", d)
	}
}
