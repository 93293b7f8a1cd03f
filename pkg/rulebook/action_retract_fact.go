// The retract_fact action: removes the facts that match (all given keys
// equal; with partial false, no other keys but meta) and fires the "X is not
// defined" rules the removal satisfies.

package rulebook

func init() { registerApply("retract_fact", applyRetractFact) }

func applyRetractFact(s *Session, c actionCall) ([]Fired, error) {
	fact, _ := c.args["fact"].(map[string]any)
	partial := true
	if p, ok := c.args["partial"].(bool); ok {
		partial = p
	}
	removed := c.target.retract(fact, partial)
	return s.existential(c.target, removed)
}
