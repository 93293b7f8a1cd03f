package forwarder

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TombstoneKey is the ConfigMap binaryData key holding the gzipped JSON list
// of tombstones.
const TombstoneKey = "tombstones.json.gz"

// maxTombstoneBytes keeps the ConfigMap under the API server's 1 MiB object
// limit with room for its metadata.
const maxTombstoneBytes = 900 << 10

// Tombstone is a deletion the receiver has not acknowledged yet. Informers
// never list a deleted object again, so this record, kept in a ConfigMap, is
// the only way the DELETED event survives a restart or a leader handover.
type Tombstone struct {
	Key       string    `json:"key"` // kind/uid, the pending key
	Kind      string    `json:"kind"`
	Cluster   string    `json:"cluster"`
	UID       string    `json:"uid"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name"`
	DeletedAt time.Time `json:"deletedAt"`
	// Payload is the DELETED event as first sent: same id, last known object.
	Payload json.RawMessage `json:"payload"`
}

// tombstones keeps the pending deletions in memory and mirrors them to one
// ConfigMap: add and remove return at once, a single writer goroutine (run)
// writes the newest list, coalescing bursts, and flush writes synchronously
// at shutdown. Only the leader writes; when another instance wrote meanwhile
// (a handover), its tombstones are merged in and handed to adopt.
type tombstones struct {
	cs        kubernetes.Interface // nil: memory only
	namespace string
	name      string
	max       int
	maxBytes  int
	log       *zap.Logger
	m         *metrics
	adopt     func(Tombstone)

	writeMu sync.Mutex // one write at a time
	mu      sync.Mutex
	recs    map[string]Tombstone
	cm      *corev1.ConfigMap // as last read or written; nil: absent
	gen     uint64            // bumped by every change
	written uint64            // gen of the list in the ConfigMap (0: as loaded)
	dirty   chan struct{}
}

func newTombstones(cs kubernetes.Interface, namespace, name string, max int, log *zap.Logger, m *metrics) *tombstones {
	if namespace == "" {
		cs = nil
	}
	return &tombstones{cs: cs, namespace: namespace, name: name, max: max, maxBytes: maxTombstoneBytes,
		log: log.With(zap.String("configMap", namespace+"/"+name)), m: m, adopt: func(Tombstone) {},
		recs: map[string]Tombstone{}, dirty: make(chan struct{}, 1)}
}

// persistent reports whether tombstones reach the ConfigMap.
func (s *tombstones) persistent() bool { return s.cs != nil }

// load reads the ConfigMap, retrying transient errors until ctx ends, and
// returns the tombstones to send again. When it cannot be read for good
// (forbidden, ctx over) the tombstones stay in memory only: writing without
// having read would erase the previous instance's list.
func (s *tombstones) load(ctx context.Context) []Tombstone {
	if !s.persistent() {
		s.log.Warn("no namespace (POD_NAMESPACE or --lease-namespace): deletions pending at shutdown are not kept across restarts")
		return nil
	}
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 30*time.Second) {
		cm, err := s.cs.CoreV1().ConfigMaps(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
		switch {
		case err == nil || apierrors.IsNotFound(err):
			return s.adoptLoaded(cm, err)
		case ctx.Err() != nil:
			s.cs = nil
			return nil
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			s.m.tombstoneErrors.WithLabelValues("read").Inc()
			s.log.Error("cannot read the tombstone ConfigMap: deletions pending at shutdown are not kept across restarts (RBAC: get, create, update configmaps)", zap.Error(err))
			s.cs = nil
			return nil
		}
		s.m.tombstoneErrors.WithLabelValues("read").Inc()
		s.log.Warn("reading the tombstone ConfigMap; retrying", zap.Duration("wait", wait), zap.Error(err))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// adoptLoaded takes the list read at start as the current state.
func (s *tombstones) adoptLoaded(cm *corev1.ConfigMap, getErr error) []Tombstone {
	if getErr != nil {
		cm = nil
	}
	list := s.decode(cm)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cm = cm
	for _, t := range list {
		s.recs[t.Key] = t
	}
	return list
}

// decode returns the tombstones of cm, oldest first; a corrupt list is
// logged and counted, and replaced by the next write.
func (s *tombstones) decode(cm *corev1.ConfigMap) []Tombstone {
	if cm == nil || len(cm.BinaryData[TombstoneKey]) == 0 {
		return nil
	}
	list, err := decodeTombstones(cm.BinaryData[TombstoneKey])
	if err != nil {
		s.m.tombstoneErrors.WithLabelValues("decode").Inc()
		s.log.Error("tombstone ConfigMap unreadable; its deletions are lost", zap.Error(err))
		return nil
	}
	return list
}

func decodeTombstones(b []byte) ([]Tombstone, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("gunzip tombstones: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("gunzip tombstones: %w", err)
	}
	var list []Tombstone
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decode tombstones: %w", err)
	}
	return list, nil
}

func encodeTombstones(list []Tombstone) ([]byte, error) {
	raw, err := json.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("encode tombstones: %w", err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("gzip tombstones: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip tombstones: %w", err)
	}
	return buf.Bytes(), nil
}

// add records a deletion (before it is queued, so an acknowledgement can
// never precede it) and drops the oldest beyond the bound.
func (s *tombstones) add(t Tombstone) {
	s.mu.Lock()
	s.recs[t.Key] = t
	for len(s.recs) > s.max {
		s.dropOldestLocked("limit")
	}
	s.changedLocked()
	s.mu.Unlock()
}

// remove forgets an acknowledged (or finally rejected) deletion.
func (s *tombstones) remove(key string) {
	s.mu.Lock()
	if _, ok := s.recs[key]; ok {
		delete(s.recs, key)
		s.changedLocked()
	}
	s.mu.Unlock()
}

func (s *tombstones) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

func (s *tombstones) changedLocked() {
	s.gen++
	s.signal()
}

// signal wakes the writer.
func (s *tombstones) signal() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// sortedLocked lists the tombstones oldest first.
func (s *tombstones) sortedLocked() []Tombstone {
	list := make([]Tombstone, 0, len(s.recs))
	for _, t := range s.recs {
		list = append(list, t)
	}
	slices.SortFunc(list, func(a, b Tombstone) int {
		if c := a.DeletedAt.Compare(b.DeletedAt); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a.Key), []byte(b.Key))
	})
	return list
}

func (s *tombstones) dropOldestLocked(reason string) {
	list := s.sortedLocked()
	if len(list) == 0 {
		return
	}
	t := list[0]
	delete(s.recs, t.Key)
	s.m.tombstonesDropped.WithLabelValues(reason).Inc()
	s.log.Warn("tombstone list full: the oldest pending deletion is no longer kept across restarts (it is still sent while this instance runs)",
		zap.String("reason", reason), zap.String("kind", t.Kind), zap.String("namespace", t.Namespace), zap.String("name", t.Name),
		zap.String("uid", t.UID), zap.Time("deletedAt", t.DeletedAt), zap.Int("max", s.max))
}

// snapshot encodes the current list within maxBytes, dropping the oldest
// tombstones (a tenth at a time) while it does not fit.
func (s *tombstones) snapshot() (uint64, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		data, err := encodeTombstones(s.sortedLocked())
		if err != nil || len(data) <= s.maxBytes {
			return s.gen, data, err
		}
		for n := max(1, len(s.recs)/10); n > 0; n-- {
			s.dropOldestLocked("size")
		}
		s.gen++
	}
}

// run writes the list whenever it changed, until ctx ends, retrying failed
// writes with backoff.
func (s *tombstones) run(ctx context.Context) {
	if !s.persistent() {
		return
	}
	wait := 500 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dirty:
		}
		if err := s.flush(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("writing the tombstone ConfigMap; retrying", zap.Duration("wait", wait), zap.Error(err))
			s.retryAfter(ctx, wait)
			wait = min(2*wait, 30*time.Second)
			continue
		}
		wait = 500 * time.Millisecond
	}
}

func (s *tombstones) retryAfter(ctx context.Context, wait time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(wait):
		s.signal()
	}
}

// flush writes the list if it changed since the last write. A conflict (or
// a ConfigMap created meanwhile) means another instance wrote: its
// tombstones are merged in and the write retried.
func (s *tombstones) flush(ctx context.Context) error {
	if !s.persistent() {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	for attempt := 1; ; attempt++ {
		gen, data, err := s.snapshot()
		if err != nil || s.isWritten(gen) {
			return err
		}
		err = s.write(ctx, gen, data)
		if err == nil {
			return nil
		}
		s.m.tombstoneErrors.WithLabelValues("write").Inc()
		if !(apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) || attempt == 5 {
			return err
		}
		if err := s.merge(ctx); err != nil {
			return err
		}
	}
}

func (s *tombstones) isWritten(gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written == gen
}

func (s *tombstones) write(ctx context.Context, gen uint64, data []byte) error {
	s.mu.Lock()
	cur := s.cm.DeepCopy()
	s.mu.Unlock()
	api := s.cs.CoreV1().ConfigMaps(s.namespace)
	var out *corev1.ConfigMap
	var err error
	if cur == nil {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace,
			Labels: map[string]string{"app.kubernetes.io/name": "ocpdr-forwarder", "app.kubernetes.io/component": "tombstones"}},
			BinaryData: map[string][]byte{TombstoneKey: data}}
		out, err = api.Create(ctx, cm, metav1.CreateOptions{})
	} else {
		cur.BinaryData = map[string][]byte{TombstoneKey: data}
		out, err = api.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("write ConfigMap %s/%s: %w", s.namespace, s.name, err)
	}
	s.mu.Lock()
	s.cm, s.written = out, gen
	s.mu.Unlock()
	return nil
}

// merge re-reads the ConfigMap another instance wrote and adopts the
// tombstones it holds that this one does not: they are deletions to send
// (again: the receiver deduplicates by event id).
func (s *tombstones) merge(ctx context.Context) error {
	cm, err := s.cs.CoreV1().ConfigMaps(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("re-read ConfigMap %s/%s: %w", s.namespace, s.name, err)
	}
	if err != nil {
		cm = nil
	}
	var adopted []Tombstone
	theirs := s.decode(cm)
	s.mu.Lock()
	s.cm = cm
	for _, t := range theirs {
		if _, ok := s.recs[t.Key]; !ok {
			s.recs[t.Key] = t
			adopted = append(adopted, t)
		}
	}
	for len(s.recs) > s.max {
		s.dropOldestLocked("limit")
	}
	s.gen++
	s.mu.Unlock()
	if len(adopted) > 0 {
		s.log.Info("tombstone ConfigMap written by another instance: merged its pending deletions", zap.Int("adopted", len(adopted)))
	}
	for _, t := range adopted {
		s.adopt(t)
	}
	return nil
}
