package inbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func open(t *testing.T, dir string, opts Options) *Inbox {
	t.Helper()
	opts.Dir = dir
	in, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func item(id string) *Item {
	return &Item{ID: id, UUID: "u-" + id, Endpoint: "endpoint", ReceivedAt: time.Now(), Payload: json.RawMessage(`{"id":"` + id + `"}`)}
}

func TestCreatesStateDirAndPersistsAcrossReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	ctx := context.Background()
	in := open(t, dir, Options{})
	for i := range 3 {
		if _, err := in.Append(ctx, item(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Complete(ctx, 1, Outcome{State: StateDone, Rules: []string{"r"}}); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "inbox.db")); err != nil {
		t.Fatal(err)
	}
	in = open(t, dir, Options{})
	defer in.Close()
	if in.Depth() != 2 {
		t.Fatalf("depth after reopen = %d, want 2", in.Depth())
	}
	p, err := in.Pending(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 || p[0].Seq != 2 || p[1].Seq != 3 || string(p[0].Payload) != `{"id":"1"}` {
		t.Fatalf("pending = %+v", p)
	}
	e, err := in.Get(1)
	if err != nil || e.State != StateDone || e.DoneAt == nil || len(e.Rules) != 1 {
		t.Fatalf("entry 1 = %+v, %v", e, err)
	}
}

func TestDropsDuplicatesAndSeenInitialState(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	in := open(t, t.TempDir(), Options{Registerer: reg})
	defer in.Close()
	ev := func(id, rv string, initial, deleted bool) *Item {
		it := item(id)
		it.ObjectKey, it.ResourceVersion, it.Initial, it.Deleted = "primary/uid-1", rv, initial, deleted
		return it
	}
	steps := []struct {
		name   string
		it     *Item
		dup    bool
		reason string
	}{
		{"first event", ev("a", "10", false, false), false, ""},
		{"same id again", ev("a", "10", false, false), true, "duplicate-id"},
		{"initial with the same state after a forwarder restart", ev("b", "10", true, false), true, "initial-seen"},
		{"initial with a newer state", ev("c", "11", true, false), false, ""},
		{"non-initial with the same state is kept", ev("d", "11", false, false), false, ""},
		{"deleted", ev("e", "12", false, true), false, ""},
		{"initial after delete (recreated object state)", ev("f", "11", true, false), false, ""},
		{"no id is never a duplicate", &Item{Payload: json.RawMessage(`[1]`)}, false, ""},
		{"no id twice", &Item{Payload: json.RawMessage(`[1]`)}, false, ""},
	}
	for _, s := range steps {
		r, err := in.Append(ctx, s.it)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if r.Duplicate != s.dup || r.Reason != s.reason {
			t.Errorf("%s: got %+v, want dup=%v reason=%q", s.name, r, s.dup, s.reason)
		}
	}
	if in.Depth() != 7 {
		t.Errorf("depth = %d, want 7", in.Depth())
	}
	if got := testutil.ToFloat64(in.m.dropped.WithLabelValues("initial-seen")); got != 1 {
		t.Errorf("initial-seen drops = %v", got)
	}
}

func TestConcurrentAppendsAreAllStoredOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	in := open(t, dir, Options{})
	const clients, per = 32, 100
	var wg sync.WaitGroup
	seqs := make(chan uint64, clients*per)
	for c := range clients {
		wg.Go(func() {
			for i := range per {
				r, err := in.Append(ctx, item(fmt.Sprintf("%d-%d", c, i)))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- r.Seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("sequence %d handed out twice", s)
		}
		seen[s] = true
	}
	if len(seen) != clients*per {
		t.Fatalf("stored %d, want %d", len(seen), clients*per)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	in = open(t, dir, Options{})
	defer in.Close()
	p, err := in.Pending(0, clients*per+10)
	if err != nil || len(p) != clients*per {
		t.Fatalf("pending after reopen = %d, %v", len(p), err)
	}
}

func TestCompactionKeepsPendingAndBoundsFinished(t *testing.T) {
	ctx := context.Background()
	in := open(t, t.TempDir(), Options{RetainCount: 3, RetainAge: time.Hour})
	defer in.Close()
	for i := range 10 {
		if _, err := in.Append(ctx, item(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Finish 1..8; 9 and 10 stay pending.
	for s := uint64(1); s <= 8; s++ {
		if err := in.Complete(ctx, s, Outcome{State: StateDone}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		if _, err := in.PutJob(ctx, Job{Name: fmt.Sprint(i), Status: "successful"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := in.Recent(100, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, e := range all {
		got = append(got, e.Seq)
	}
	want := []uint64{10, 9, 8, 7, 6}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after count compaction: %v, want %v", got, want)
	}
	jobs, _ := in.RecentJobs(10)
	if len(jobs) != 3 || jobs[0].Name != "3" {
		t.Fatalf("jobs after compaction: %+v", jobs)
	}
	// A compacted id is forgotten; a retained one is still a duplicate.
	if r, _ := in.Append(ctx, item("7")); !r.Duplicate {
		t.Errorf("retained id 7 not deduplicated")
	}
	if r, _ := in.Append(ctx, item("0")); r.Duplicate {
		t.Errorf("compacted id 0 still deduplicated")
	}
}

func TestCompactionByAge(t *testing.T) {
	ctx := context.Background()
	in := open(t, t.TempDir(), Options{RetainCount: 100, RetainAge: time.Nanosecond})
	defer in.Close()
	for i := range 3 {
		if _, err := in.Append(ctx, item(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Complete(ctx, 1, Outcome{State: StateFailed, Reason: "boom"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	if err := in.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	all, _ := in.Recent(10, false)
	if len(all) != 2 || all[1].Seq != 2 {
		t.Fatalf("after age compaction: %+v", all)
	}
}

func TestCompleteUnknownEntryFails(t *testing.T) {
	in := open(t, t.TempDir(), Options{})
	defer in.Close()
	if err := in.Complete(context.Background(), 42, Outcome{}); err == nil {
		t.Fatal("completing a missing entry succeeded")
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Append(context.Background(), item("x")); err != ErrClosed {
		t.Fatalf("append after close: %v", err)
	}
}

// The object states that drop repeated initial events survive compaction of
// the entries that carried them and a reopen; ids survive a reopen too.
func TestIndexesSurviveCompactionAndReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	in := open(t, dir, Options{RetainCount: 1})
	for i, rv := range []string{"5", "6"} {
		it := item(fmt.Sprint("obj", i))
		it.ObjectKey, it.ResourceVersion = fmt.Sprint("c/uid-", i), rv
		if _, err := in.Append(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	for s := uint64(1); s <= 2; s++ {
		if err := in.Complete(ctx, s, Outcome{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Compact(ctx); err != nil { // removes entry 1
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	in = open(t, dir, Options{RetainCount: 1})
	defer in.Close()
	for _, c := range []struct {
		key, rv, id string
		dup         bool
	}{
		{"c/uid-0", "5", "x1", true}, // from the objects bucket (entry compacted)
		{"c/uid-1", "6", "x2", true}, // from the retained entry
		{"c/uid-1", "7", "x3", false},
	} {
		it := item(c.id)
		it.ObjectKey, it.ResourceVersion, it.Initial = c.key, c.rv, true
		r, err := in.Append(ctx, it)
		if err != nil || r.Duplicate != c.dup {
			t.Errorf("%+v: %+v %v", c, r, err)
		}
	}
	if r, _ := in.Append(ctx, item("obj1")); !r.Duplicate || r.Seq != 2 {
		t.Errorf("retained id after reopen: %+v", r)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Acknowledged events live in the write-ahead log before bbolt has them: a
// copy of the state directory taken then (what a crash leaves) replays them
// all; a torn last record (never acknowledged) is ignored.
func TestAcknowledgedEventsSurviveACrashBeforeApply(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	live := open(t, dir, Options{ApplyDelay: time.Hour})
	defer live.Close()
	const n = 300
	for i := range n {
		if _, err := live.Append(ctx, item(fmt.Sprint("e", i))); err != nil {
			t.Fatal(err)
		}
	}
	if p, _ := live.Pending(0, n); len(p) != 0 {
		t.Fatalf("applied already (%d); the test needs them only in the WAL", len(p))
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, dir, crashed)
	in := open(t, crashed, Options{})
	p, err := in.Pending(0, n+1)
	if err != nil || len(p) != n || p[0].ID != "e0" || p[n-1].Seq != n {
		t.Fatalf("replayed %d entries, %v", len(p), err)
	}
	if r, _ := in.Append(ctx, item("e7")); !r.Duplicate {
		t.Error("replayed id not deduplicated")
	}
	r, err := in.Append(ctx, item("new"))
	if err != nil || r.Seq != n+1 {
		t.Fatalf("next sequence %+v %v", r, err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}

	// Tear the last record of the live WAL copy.
	torn := filepath.Join(t.TempDir(), "torn")
	copyDir(t, dir, torn)
	wal := filepath.Join(torn, "inbox.wal.0")
	b, _ := os.ReadFile(wal)
	end := 0
	for _, rec := range readWAL(b, 0).recs {
		end += 16 + len(rec.value)
	}
	b[end-3] ^= 0xff
	if err := os.WriteFile(wal, b, 0o600); err != nil {
		t.Fatal(err)
	}
	in = open(t, torn, Options{})
	defer in.Close()
	if p, _ := in.Pending(0, n+1); len(p) != n-1 {
		t.Fatalf("torn tail: replayed %d, want %d", len(p), n-1)
	}
}
