// The post_event action: queues an event for a ruleset, run after the
// current rule finished, as ansible-rulebook does.

package rulebook

import "fmt"

func init() { registerApply("post_event", applyPostEvent) }

func applyPostEvent(s *Session, c actionCall) ([]Fired, error) {
	ev, ok := c.args["event"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("rule %q: post_event needs a mapping", c.rule.Name)
	}
	s.queue = append(s.queue, queued{c.target, InternalEvent(ev, "post_event", s.opts.Now()), false})
	return nil, nil
}
