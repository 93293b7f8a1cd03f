package forwarder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// The encoded list stays within the ConfigMap budget: beyond it the oldest
// tombstones are dropped and counted (reason size).
func TestTombstonesByteBound(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry(), func() int { return 0 }, func() int { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	s := newTombstones(nil, "", "x", 1000, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), m)
	s.maxBytes = 4096
	base := time.Now()
	const n = 200
	for i := 0; i < n; i++ {
		h := sha256.Sum256([]byte(fmt.Sprint(i))) // incompressible filler
		s.add(Tombstone{Key: fmt.Sprintf("PersistentVolume/%03d", i), DeletedAt: base.Add(time.Duration(i) * time.Second),
			Payload: []byte(fmt.Sprintf("{%q:%q}", "x", hex.EncodeToString(h[:])))})
	}
	_, data, err := s.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	kept := s.len()
	if len(data) > s.maxBytes || kept == 0 || kept == n {
		t.Fatalf("%d bytes for %d tombstones, want at most %d bytes and some dropped", len(data), kept, s.maxBytes)
	}
	list, err := decodeTombstones(data)
	if err != nil {
		t.Fatal(err)
	}
	if list[len(list)-1].Key != fmt.Sprintf("PersistentVolume/%03d", n-1) || list[0].Key != fmt.Sprintf("PersistentVolume/%03d", n-kept) {
		t.Errorf("kept %s..%s, want the newest %d", list[0].Key, list[len(list)-1].Key, kept)
	}
	if got := testutil.ToFloat64(m.tombstonesDropped.WithLabelValues("size")); int(got) != n-kept {
		t.Errorf("tombstones_dropped_total{reason=size} = %v, want %d", got, n-kept)
	}
}
