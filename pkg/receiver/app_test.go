package receiver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
)

// When a step of New fails after the inbox is open, the inbox is closed
// again: a second New on the same state directory opens it at once instead
// of waiting for bbolt's file lock and timing out.
func TestNewCleansUpOnPartialFailure(t *testing.T) {
	cfg := baseConfig(t)
	failing := Deps{NewEngine: func(Config, *zap.Logger) (dispatch.Engine, error) { return nil, errors.New("bad rulebook") }}
	r, err := New(context.Background(), cfg, failing)
	if err == nil || !strings.Contains(err.Error(), "receiver: rulebook: bad rulebook") || r != nil {
		t.Fatalf("New with a failing engine: %v, %v", r, err)
	}
	start := time.Now()
	r, err = New(context.Background(), cfg, Deps{NewEngine: func(Config, *zap.Logger) (dispatch.Engine, error) { return recordEngine{}, nil }})
	if err != nil {
		t.Fatalf("second New on the same state dir: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("second New took %v: the first left the inbox open", d)
	}
	r.Stop(context.Background()) // also undoes a New that never started
	r, err = New(context.Background(), cfg, Deps{NewEngine: func(Config, *zap.Logger) (dispatch.Engine, error) { return recordEngine{}, nil }})
	if err != nil {
		t.Fatalf("New after Stop: %v", err)
	}
	r.Stop(context.Background())
}
