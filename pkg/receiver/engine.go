package receiver

import (
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/rulebook"
)

// RulebookEngine loads cfg.Rulebook with cfg.Vars (see Config.ResolveVars)
// and returns a rule engine session: the EngineFactory of `receiver serve`.
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
	return &sessionEngine{s: rulebook.NewSession(rb, rulebook.Options{Logger: log})}, nil
}

// WrapEntry builds the rules' event for a stored webhook request with the
// rulebook package's webhook shape, so that serve and match agree.
func WrapEntry(e *inbox.Entry) (map[string]any, error) {
	return rulebook.WrapWebhookEvent(json.RawMessage(e.Payload), e.Endpoint, e.Headers, e.ReceivedAt, e.UUID), nil
}

type sessionEngine struct{ s *rulebook.Session }

func convert(fs []rulebook.Fired) []dispatch.Fired {
	out := make([]dispatch.Fired, len(fs))
	for i, f := range fs {
		out[i] = dispatch.Fired{Ruleset: f.Ruleset, Rule: f.Rule, Action: f.Action, Args: f.Args, MatchingEvents: f.MatchingEvents}
	}
	return out
}

func (e *sessionEngine) Process(ev map[string]any) ([]dispatch.Fired, error) {
	f, err := e.s.Process(ev)
	return convert(f), err
}

func (e *sessionEngine) PostEvent(ruleset string, ev map[string]any) ([]dispatch.Fired, error) {
	f, err := e.s.PostEvent(ruleset, ev)
	return convert(f), err
}

func (e *sessionEngine) SetFact(ruleset string, fact map[string]any) ([]dispatch.Fired, error) {
	f, err := e.s.SetFact(ruleset, fact)
	return convert(f), err
}

// Advance fires the rulebook's time windows that ended (dispatch.Timed).
func (e *sessionEngine) Advance(now time.Time) ([]dispatch.Fired, error) {
	f, err := e.s.Advance(now)
	return convert(f), err
}
