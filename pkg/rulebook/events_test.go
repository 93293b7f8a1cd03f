// Tests of the event helpers: internal events' meta.

package rulebook

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// Events made by set_fact, post_event or a job's artifacts carry
// ansible-rulebook's internal meta; meta the object already has is kept.
func TestInternalEvent(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	in := map[string]any{"a": map[string]any{"b": 1}}
	ev := InternalEvent(in, "set_fact", at)
	meta := ev["meta"].(map[string]any)
	src := meta["source"].(map[string]any)
	if src["name"] != "set_fact" || src["type"] != "internal" || meta["received_at"] != "2026-01-02T02:04:05.000000Z" {
		t.Errorf("meta = %v", meta)
	}
	if u, err := uuid.Parse(meta["uuid"].(string)); err != nil || u.Version() != 4 {
		t.Errorf("uuid %v: %v", meta["uuid"], err)
	}
	if _, ok := in["meta"]; ok {
		t.Error("the original object was changed")
	}
	ev["a"].(map[string]any)["b"] = 2
	if in["a"].(map[string]any)["b"] != 1 {
		t.Error("the event shares maps with the original")
	}
	kept := InternalEvent(map[string]any{"meta": map[string]any{"uuid": "mine"}}, "post_event", at)
	if kept["meta"].(map[string]any)["uuid"] != "mine" {
		t.Errorf("existing meta.uuid replaced: %v", kept["meta"])
	}
}
