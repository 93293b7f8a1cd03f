// Reading the header of a received body: the fields of a forwarder event
// that the receiver's inbox (dedupe, object state) and its API (summaries)
// need, from any JSON body, with exact key names.

package event

import "encoding/json"

// Header is what Peek reads from a body: the top-level fields of a Payload
// and resource.kind and resource.metadata. Everything is zero for a body
// that is not shaped like an event.
type Header struct {
	ID       string
	Type     string
	Kind     string
	Cluster  string
	Initial  bool
	Resource ResourceHeader
}

// ResourceHeader is the identifying part of the resource of a Payload.
type ResourceHeader struct {
	Kind     string
	Metadata Meta
}

// Peek reads a body's Header by exact key names: encoding/json matches keys
// case-insensitively, so {"id":"a","ID":"b"} would dedupe on "b" while the
// rules see "a". A member of the wrong type reads as zero.
func Peek(body []byte) Header {
	var h Header
	top := exactObject(body)
	h.ID, h.Type, h.Kind, h.Cluster = exactString(top, "id"), exactString(top, "type"), exactString(top, "kind"), exactString(top, "cluster")
	_ = json.Unmarshal(top["initial"], &h.Initial)
	res := exactObject(top["resource"])
	h.Resource.Kind = exactString(res, "kind")
	md := exactObject(res["metadata"])
	h.Resource.Metadata = Meta{
		UID: exactString(md, "uid"), Name: exactString(md, "name"), Namespace: exactString(md, "namespace"),
		ResourceVersion: exactString(md, "resourceVersion"),
	}
	return h
}

// exactObject decodes a JSON object's members by their exact names (nil
// for anything that is not an object).
func exactObject(raw json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

func exactString(m map[string]json.RawMessage, k string) string {
	var v string
	if json.Unmarshal(m[k], &v) != nil {
		return ""
	}
	return v
}
