// Tests of Peek: what the inbox and the API read from a received body.

package event

import "testing"

func TestPeek(t *testing.T) {
	cases := []struct {
		name string
		body string
		want Header
	}{
		{"forwarder event", `{"id":"a","type":"MODIFIED","kind":"PersistentVolume","cluster":"primary","initial":true,
			"resource":{"kind":"PersistentVolume","metadata":{"uid":"u","name":"pv1","namespace":"","resourceVersion":"7"}}}`,
			Header{ID: "a", Type: "MODIFIED", Kind: "PersistentVolume", Cluster: "primary", Initial: true,
				Resource: ResourceHeader{Kind: "PersistentVolume", Metadata: Meta{UID: "u", Name: "pv1", ResourceVersion: "7"}}}},
		{"case-folded keys are not the keys", `{"ID":"b","Kind":"X","resource":{"Metadata":{"Name":"n"}}}`, Header{}},
		{"wrong types read as zero", `{"id":5,"initial":"yes","resource":{"metadata":[1]}}`, Header{}},
		{"not an object", `[1,2]`, Header{}},
		{"not JSON", `{`, Header{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Peek([]byte(c.body)); got != c.want {
				t.Errorf("Peek = %+v, want %+v", got, c.want)
			}
		})
	}
}
