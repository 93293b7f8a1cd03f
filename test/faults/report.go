package faults

import (
	"encoding/json"
	"os"
	"sort"
	"testing"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

// Row is one line of FAULTS.md.
type Row struct {
	Fault        string `json:"fault"`
	Acknowledged int    `json:"acknowledged"`
	Found        int    `json:"found"`
	Lost         int    `json:"lost"`
	Note         string `json:"note,omitempty"`
}

// record fails the test when an acknowledged event was lost, and appends the
// row to $FAULTS_OUT when set.
func record(t *testing.T, row Row) {
	t.Helper()
	t.Logf("fault %q: acknowledged %d, found %d, lost %d (%s)", row.Fault, row.Acknowledged, row.Found, row.Lost, row.Note)
	if row.Lost != 0 {
		t.Errorf("%s: %d acknowledged events lost", row.Fault, row.Lost)
	}
	out := os.Getenv("FAULTS_OUT")
	if out == "" {
		return
	}
	b, _ := json.Marshal(row)
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, _ = f.Write(append(b, '\n'))
}

// storedIDs opens a stopped receiver's inbox and returns the idempotency ids
// of every entry it holds.
func storedIDs(t *testing.T, stateDir string) map[string]bool {
	t.Helper()
	in, err := inbox.Open(inbox.Options{Dir: stateDir})
	if err != nil {
		t.Fatalf("open the inbox after recovery: %v", err)
	}
	defer in.Close()
	entries, err := in.Recent(1<<30, false)
	if err != nil {
		t.Fatal(err)
	}
	ids := make(map[string]bool, len(entries))
	for _, e := range entries {
		ids[e.ID] = true
	}
	return ids
}

// lost lists the acknowledged ids that are not stored, sorted.
func lost(acked []string, stored map[string]bool) []string {
	var out []string
	for _, id := range acked {
		if !stored[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
