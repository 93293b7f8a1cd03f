package inbox

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The hand-written header decodes to the same entry as encoding/json's.
func TestEncodeNewMatchesJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678900000, time.UTC)
	long := strings.Repeat("h", 200) // header length needs a 2-byte uvarint
	cases := []Entry{
		{Seq: 1, UUID: "u", ReceivedAt: at, State: StatePending, Payload: json.RawMessage(`{"a":1}`)},
		{Seq: 1 << 40, ID: "id-\"quoted\"\\", UUID: "u", Endpoint: "hooks/pv", ReceivedAt: at, State: StatePending,
			Headers:   map[string]string{"X-B": "tab\there", "A": "ünïcode", "Ctl": "\x01\x1f", "Bad": "\xff"},
			ObjectKey: "primary/uid", ResourceVersion: "42", Deleted: true, Payload: json.RawMessage(`[1]`)},
		{Seq: 7, UUID: long, Endpoint: long + long + long, ReceivedAt: at, State: StatePending, Payload: json.RawMessage(`null`)},
		{Seq: 8, UUID: "u", ReceivedAt: at, State: StatePending},
	}
	for i, e := range cases {
		ref, err := encodeEntry(&e)
		if err != nil {
			t.Fatal(err)
		}
		want, err := decodeEntry(ref, true)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeEntry(encodeNew(&e), true)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(want.Payload) == 0 {
			want.Payload, got.Payload = nil, nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("case %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}
