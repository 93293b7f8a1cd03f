// The set_fact action: asserts a fact into a ruleset's working memory; the
// rules see it after the current rule finished.

package rulebook

import "fmt"

func init() { registerApply("set_fact", applySetFact) }

func applySetFact(s *Session, c actionCall) ([]Fired, error) {
	fact, ok := c.args["fact"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("rule %q: set_fact needs a mapping", c.rule.Name)
	}
	fact = InternalEvent(fact, "set_fact", s.opts.Now())
	c.target.facts = append(c.target.facts, fact)
	s.queue = append(s.queue, queued{c.target, fact, true})
	return nil, nil
}
