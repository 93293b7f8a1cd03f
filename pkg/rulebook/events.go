// Event helpers: the ansible.eda.webhook event shape, the meta of
// internal events, JSON number normalisation and copies.

package rulebook

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
)

// TimeLayout is how meta.received_at is written (ansible-rulebook's
// isoformat with microseconds, in UTC).
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// webhookSourceName is the meta.source name and type of every
// ansible.eda.webhook event.
const webhookSourceName = "ansible.eda.webhook"

// InternalEvent returns a copy of obj tagged as an event the engine or the
// dispatcher made itself (set_fact, post_event, job artifacts posted back):
// meta.source {name: source, type: internal}, received_at and uuid, each
// only where obj's meta does not have it already (as ansible-rulebook's
// insert_meta_info).
func InternalEvent(obj map[string]any, source string, now time.Time) map[string]any {
	o := deepCopy(obj)
	meta, _ := o["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	if _, ok := meta["source"]; !ok {
		meta["source"] = map[string]any{"name": source, "type": "internal"}
	}
	if _, ok := meta["received_at"]; !ok {
		meta["received_at"] = now.UTC().Format(TimeLayout)
	}
	if _, ok := meta["uuid"]; !ok {
		meta["uuid"] = uuid.NewString()
	}
	o["meta"] = meta
	return o
}

// WrapWebhookEvent builds the event ansible.eda.webhook hands to the rules:
// {"payload": body, "meta": {endpoint, headers, source{name,type}, received_at, uuid}}.
// Whole JSON numbers in body become int64 (see numbersToInt); a
// json.RawMessage body is decoded first. An empty id gets a new UUID.
func WrapWebhookEvent(body any, endpoint string, headers map[string]string, now time.Time, id string) map[string]any {
	h := make(map[string]any, len(headers))
	for k, v := range headers {
		h[k] = v
	}
	if id == "" {
		id = uuid.NewString()
	}
	return map[string]any{
		"payload": normalizeJSON(body),
		"meta": map[string]any{
			"endpoint": endpoint, "headers": h,
			"source":      map[string]any{"name": webhookSourceName, "type": webhookSourceName},
			"received_at": now.UTC().Format(TimeLayout),
			"uuid":        id,
		},
	}
}

func normalizeJSON(v any) any {
	switch x := v.(type) {
	case json.RawMessage:
		var out any
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		if err := d.Decode(&out); err == nil {
			return numbersToInt(out)
		}
	}
	return numbersToInt(v)
}

// numbersToInt turns whole float64 JSON numbers into int64 so that
// templates and comparisons see integers as ansible-rulebook does; a
// json.Number (a json.RawMessage body) that is an integer becomes an int64
// or, beyond int64, an exact *big.Int.
func numbersToInt(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			x[k] = numbersToInt(val)
		}
	case []any:
		for i := range x {
			x[i] = numbersToInt(x[i])
		}
	case json.Number:
		if isDecimal(string(x)) {
			n, _ := parseInt(string(x))
			return n
		}
		f, err := x.Float64()
		if err != nil {
			return string(x)
		}
		return numbersToInt(f)
	case float64:
		if x == float64(int64(x)) && x < 1e15 && x > -1e15 {
			return int64(x)
		}
	}
	return v
}

func deepCopy(m map[string]any) map[string]any {
	c, _ := deepCopyAny(m).(map[string]any)
	if c == nil {
		c = map[string]any{}
	}
	return c
}

func deepCopyAny(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = deepCopyAny(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = deepCopyAny(x[i])
		}
		return out
	}
	return v
}

// sortedKeys gives a map's keys in order (m_0, m_1, ... for matches).
func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
