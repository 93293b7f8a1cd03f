// Tests of the event payload: ids, validation and JSON field names.

package event

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestIDIsStablePerChange(t *testing.T) {
	a := ID("uid-1", "100", Modified)
	if a != ID("uid-1", "100", Modified) {
		t.Fatal("same change gave two ids")
	}
	for _, other := range []string{ID("uid-1", "101", Modified), ID("uid-1", "100", Deleted), ID("uid-2", "100", Modified), ID("uid-11", "00", Modified)} {
		if other == a {
			t.Fatalf("different change gave the same id %s", a)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Payload{Schema: Schema, ID: "x", Type: Added, Kind: KindPersistentVolume, Resource: json.RawMessage(`{"metadata":{"uid":"u"}}`)}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid payload rejected: %v", err)
	}
	bad := Payload{Schema: "other/v9", Type: "UPSERT", Resource: json.RawMessage(`[1]`)}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid payload accepted")
	}
	for _, want := range []string{"schema", "id is empty", "type \"UPSERT\"", "kind is empty", "resource must be a JSON object"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestRoundTripFieldNames(t *testing.T) {
	p := Payload{Schema: Schema, ID: "i", Type: Deleted, Kind: KindVolumeSnapshot, APIVersion: "snapshot.storage.k8s.io/v1", Cluster: "primary", Initial: true,
		Resource: json.RawMessage(`{"metadata":{"uid":"u1","name":"s","namespace":"ns","resourceVersion":"7"}}`)}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"schema", "id", "type", "kind", "apiVersion", "cluster", "observedAt", "initial", "resource"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	meta, err := p.ObjectMeta()
	if err != nil || meta.UID != "u1" || meta.ResourceVersion != "7" || meta.Namespace != "ns" {
		t.Errorf("ObjectMeta = %+v, %v", meta, err)
	}
}
