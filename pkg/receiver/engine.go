// The receiver's rule engine: a rulebook session built from the
// configuration, used by the dispatcher as it is.

package receiver

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/rulebook"
)

// RulebookEngine loads cfg.Rulebook with cfg.Vars (see Config.ResolveVars)
// and returns a rule engine session: the EngineFactory of `receiver serve`.
// A *rulebook.Session is a dispatch.Engine and a dispatch.Timed.
func RulebookEngine(cfg Config, log *zap.Logger) (dispatch.Engine, error) {
	vars := map[string]any{}
	if cfg.Vars != "" {
		v, err := rulebook.LoadVarsFile(cfg.Vars)
		if err != nil {
			return nil, fmt.Errorf("vars %s: %w", cfg.Vars, err)
		}
		vars = v
	}
	rb, err := rulebook.LoadFile(cfg.Rulebook, vars)
	if err != nil {
		return nil, err
	}
	return rulebook.NewSession(rb, rulebook.Options{Logger: log}), nil
}

// WrapEntry builds the rules' event for a stored webhook request: the one
// ansible.eda.webhook shape (dispatch.WrapEntry), so that serve and match
// agree.
func WrapEntry(e *inbox.Entry) (map[string]any, error) { return dispatch.WrapEntry(e) }

// The session must stay usable as the dispatcher's engine directly.
var (
	_ dispatch.Engine = (*rulebook.Session)(nil)
	_ dispatch.Timed  = (*rulebook.Session)(nil)
)
