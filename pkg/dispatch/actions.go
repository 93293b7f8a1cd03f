// Carrying out fired actions: what the action registry
// (rulebook.LookupAction) says the dispatcher does with each one. Job actions
// go to their lanes (jobs.go), builtins were applied by the engine already,
// and the dispatcher's own actions have a file each (action_*.go).

package dispatch

import (
	"context"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/rulebook"
)

// handler carries out an action the dispatcher does itself; the action is
// counted as successful after it.
type handler func(t *tracker, f Fired, log *zap.Logger)

// handlers are the registry's Dispatcher actions.
var handlers = map[string]handler{
	"debug":       debugAction,
	"print_event": printEventAction,
	"shutdown":    shutdownAction,
}

// fire records a match and starts its action.
func (d *Dispatcher) fire(ctx context.Context, t *tracker, f Fired) {
	d.m.matches.WithLabelValues(f.Ruleset, f.Rule).Inc()
	t.mu.Lock()
	t.rules = append(t.rules, f.Ruleset+"/"+f.Rule)
	t.mu.Unlock()
	log := d.log.With(zap.Uint64("seq", t.seq), zap.String("ruleset", f.Ruleset), zap.String("rule", f.Rule), zap.String("action", f.Action))
	spec, _ := rulebook.LookupAction(f.Action)
	h := handlers[f.Action]
	switch {
	case spec.Job != "":
		d.enqueue(ctx, t, f)
	case spec.Dispatcher && h != nil:
		h(t, f, log)
		d.m.actions.WithLabelValues(f.Action, "successful").Inc()
	case spec.Builtin:
		log.Debug("builtin action") // the engine applied it already
		d.m.actions.WithLabelValues(f.Action, "successful").Inc()
	default:
		log.Warn("unsupported action")
		d.m.actions.WithLabelValues("unsupported", "failed").Inc()
		t.mu.Lock()
		t.failures = append(t.failures, "unsupported action "+f.Action)
		t.mu.Unlock()
	}
}
