// Tests of the payload checks and of the event header read for dedupe.

package webhook

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/pkg/event"
)

// A forwarder event as pkg/sender posts it (a PV with managedFields and a
// non-ASCII annotation) passes the UTF-8 and depth checks.
func TestForwarderEventAccepted(t *testing.T) {
	resource := `{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"pv1","uid":"u1",` +
		`"resourceVersion":"7","annotations":{"note":"réplica ✓"},"managedFields":[{"manager":"m",` +
		`"fieldsV1":{"f:spec":{"f:csi":{"f:volumeAttributes":{".":{},"f:share":{}}}}}}]},` +
		`"spec":{"capacity":{"storage":"1Gi"},"csi":{"driver":"nfs.csi.k8s.io","volumeHandle":"h"}}}`
	ev := event.Payload{
		Schema: event.Schema, ID: event.ID("u1", "7", event.Modified), Type: event.Modified,
		Kind: event.KindPersistentVolume, APIVersion: "v1", Cluster: "primary",
		ObservedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Resource: json.RawMessage(resource),
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	srv, in, _ := newServer(t, Config{})
	status, text := post(t, srv.URL+"/endpoint", body, map[string]string{"Content-Type": "application/json"})
	if status != 200 || in.Depth() != 1 {
		t.Fatalf("status %d %q, depth %d", status, text, in.Depth())
	}
}

func TestDepthExceeded(t *testing.T) {
	cases := []struct {
		body string
		max  int
		want int
	}{
		{`{}`, 1, -1},
		{`{"a":[]}`, 1, 5},
		{`[[1],[2],[3]]`, 2, -1},
		{`"[[[["`, 1, -1},
		{`["\\",[[]]]`, 2, 7},
		{`["\"[[",[]]`, 2, -1},
		{`[[[`, 2, 2},
	}
	for _, c := range cases {
		if got := depthExceeded([]byte(c.body), c.max); got != c.want {
			t.Errorf("depthExceeded(%s, %d) = %d, want %d", c.body, c.max, got, c.want)
		}
	}
}

// The dedupe key and object state come from exactly the keys the rules see:
// encoding/json alone would read "ID" as "id" (issue 15, low).
func TestDecodeProbeExactKeys(t *testing.T) {
	cases := []struct {
		name, body, id, uid, rv string
		initial                 bool
	}{
		{"forwarder event", `{"id":"a","type":"ADDED","initial":true,"resource":{"metadata":{"uid":"u","resourceVersion":"7"}}}`, "a", "u", "7", true},
		{"case-folded id ignored", `{"id":"a","ID":"b"}`, "a", "", "", false},
		{"only case-folded keys", `{"ID":"b","Resource":{"Metadata":{"UID":"u"}}}`, "", "", "", false},
		{"wrong types", `{"id":5,"initial":"yes","resource":[1]}`, "", "", "", false},
		{"not an object", `[1,2]`, "", "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := event.Peek([]byte(c.body))
			if p.ID != c.id || p.Resource.Metadata.UID != c.uid || p.Resource.Metadata.ResourceVersion != c.rv || p.Initial != c.initial {
				t.Errorf("got %+v", p)
			}
		})
	}
}
