// Tests that the dispatcher carries out every action the registry says it
// does, and that each fired action reaches the right place.

package dispatch

import (
	"math/big"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/rulebook"
)

// Every action a rulebook may name is carried out by exactly one party,
// and the dispatcher has a handler for exactly the ones it owns: an action
// added to the registry cannot silently become "unsupported" at run time.
func TestRegistryMatchesHandlers(t *testing.T) {
	for _, name := range rulebook.ActionNames() {
		spec, _ := rulebook.LookupAction(name)
		owners := 0
		for _, b := range []bool{spec.Job != "", spec.Builtin, spec.Dispatcher} {
			if b {
				owners++
			}
		}
		if owners > 1 || (owners == 0 && name != "run_module") {
			t.Errorf("%s: carried out by %d parties (job %q, builtin %v, dispatcher %v)", name, owners, spec.Job, spec.Builtin, spec.Dispatcher)
		}
		if _, ok := handlers[name]; ok != spec.Dispatcher {
			t.Errorf("%s: dispatcher action %v, handler %v", name, spec.Dispatcher, ok)
		}
	}
	for name := range handlers {
		if _, ok := rulebook.LookupAction(name); !ok {
			t.Errorf("handler for %s, which no rulebook can name", name)
		}
	}
}

// The rules see whole JSON numbers as integers whichever wrapper built the
// event (a template renders 3, not 3.0), and a body that is not JSON fails
// the entry instead of reaching the rules as bytes.
func TestWrapEntryNormalisesNumbers(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	ev, err := WrapEntry(&inbox.Entry{Seq: 1, Endpoint: "endpoint", UUID: "U", ReceivedAt: at,
		Headers: map[string]string{"Content-Type": "application/json"}, Payload: []byte(`{"n":3,"f":1.5,"l":[2],"big":123456789012345678901234567890}`)})
	if err != nil {
		t.Fatal(err)
	}
	p := ev["payload"].(map[string]any)
	if _, ok := p["n"].(int64); !ok {
		t.Errorf("payload.n is %T, want int64", p["n"])
	}
	if _, ok := p["l"].([]any)[0].(int64); !ok {
		t.Errorf("payload.l[0] is %T, want int64", p["l"].([]any)[0])
	}
	if b, ok := p["big"].(*big.Int); !ok || b.String() != "123456789012345678901234567890" {
		t.Errorf("payload.big is %T %v, want the exact integer", p["big"], p["big"])
	}
	if p["f"] != 1.5 {
		t.Errorf("payload.f = %v, want 1.5", p["f"])
	}
	meta := ev["meta"].(map[string]any)
	if meta["received_at"] != "2026-01-02T03:04:05.000006Z" || meta["uuid"] != "U" || meta["endpoint"] != "endpoint" {
		t.Errorf("meta = %v", meta)
	}
	if _, err := WrapEntry(&inbox.Entry{Seq: 2, Payload: []byte(`{`)}); err == nil {
		t.Error("a body that is not JSON was wrapped")
	}
}
