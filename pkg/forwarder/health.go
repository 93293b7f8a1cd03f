package forwarder

import (
	"context"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Readiness means "able to do the job": the leader once its informers have
// synced, a standby while it reaches the API server (so it can take the
// lease over). A rollout of two replicas thus never waits on the standby.
// Who leads is /leader (200 leader, 503 standby) and the
// ocpdr_forwarder_leader metric.
func (f *Forwarder) readyz(w http.ResponseWriter, r *http.Request) {
	switch {
	case f.leading.Load() && !f.Ready():
		http.Error(w, "leader: informers not synced", http.StatusServiceUnavailable)
	case f.leading.Load():
		_, _ = w.Write([]byte("ok: leader"))
	case f.standby.reachable(r.Context(), f.apiReachable):
		_, _ = w.Write([]byte("ok: standby"))
	default:
		http.Error(w, "standby: API server not reachable", http.StatusServiceUnavailable)
	}
}

func (f *Forwarder) leaderz(w http.ResponseWriter, _ *http.Request) {
	if !f.leading.Load() {
		http.Error(w, "standby", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("leader"))
}

// Leading reports whether this instance holds the lease (or runs without
// leader election).
func (f *Forwarder) Leading() bool { return f.leading.Load() }

func (f *Forwarder) apiReachable(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := f.cs.CoordinationV1().Leases(f.cfg.LeaseNamespace).Get(ctx, f.cfg.LeaseName, metav1.GetOptions{})
	return err == nil || apierrors.IsNotFound(err)
}

// standbyCheck caches the standby's API check for a few seconds so probes
// do not add an API call each.
type standbyCheck struct {
	mu      sync.Mutex
	checked time.Time
	ok      bool
}

func (c *standbyCheck) reachable(ctx context.Context, check func(context.Context) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) > 5*time.Second {
		c.ok, c.checked = check(ctx), time.Now()
	}
	return c.ok
}
