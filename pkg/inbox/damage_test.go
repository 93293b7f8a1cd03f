package inbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// session opens dir, appends ids prefix-0..n-1 and closes it (bbolt holds
// them all).
func session(t *testing.T, dir, prefix string, n int) {
	t.Helper()
	in := open(t, dir, Options{})
	for i := range n {
		if _, err := in.Append(context.Background(), item(fmt.Sprint(prefix, i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
}

// crashed appends n events that reach only the WAL and copies the state
// directory to dir, as a crash before the applier ran leaves it.
func crashed(t *testing.T, dir string, n int) {
	t.Helper()
	live := open(t, t.TempDir(), Options{ApplyDelay: time.Hour})
	defer live.Close()
	for i := range n {
		if _, err := live.Append(context.Background(), item(fmt.Sprint("e", i))); err != nil {
			t.Fatal(err)
		}
	}
	copyDir(t, live.opts.Dir, dir)
}

// walOffsets returns the start offset of each record in a WAL file and the
// offset after the last.
func walOffsets(t *testing.T, path string) ([]int, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	off := 0
	for _, r := range readWAL(b, 0).recs {
		offs = append(offs, off)
		off += 16 + len(r.value)
	}
	return append(offs, off), b
}

func damageWAL(t *testing.T, dir string, fn func(offs []int, b []byte)) {
	t.Helper()
	path := filepath.Join(dir, "inbox.wal.0")
	offs, b := walOffsets(t, path)
	fn(offs, b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// boltDataSize is pgid × page size of a closed store.
func boltDataSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	_ = db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size
}

// damagePage overwrites the type flags of the events bucket's root page.
func damagePage(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var root int64
	_ = db.View(func(tx *bolt.Tx) error { root = int64(tx.Bucket(bucketEvents).Root()); return nil })
	ps := int64(db.Info().PageSize)
	_ = db.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0x0b, 0x30}, root*ps+8); err != nil {
		t.Fatal(err)
	}
}

func putRaw(t *testing.T, path string, seq uint64, v []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Put(seqKey(seq), v) }); err != nil {
		t.Fatal(err)
	}
}

type damageWant struct {
	refuse      []string // Open fails with ErrDamaged naming these
	entries     int
	lost        uint64
	quarantined int
	log         string // a message logged at open
	nextSeq     uint64 // the next append's sequence
}

// openDamaged opens dir with an observed logger and checks it against want.
func openDamaged(t *testing.T, dir string, want damageWant) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	in, err := Open(Options{Dir: dir, Logger: zap.New(core), Registerer: prometheus.NewRegistry()})
	if len(want.refuse) > 0 {
		if err == nil {
			in.Close()
			t.Fatal("opened a damaged store")
		}
		for _, s := range want.refuse {
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), s) {
				t.Errorf("error %q: want ErrDamaged naming %q", err, s)
			}
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	entries, err := in.Recent(1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != want.entries {
		t.Errorf("entries = %d, want %d", len(entries), want.entries)
	}
	if got := testutil.ToFloat64(in.m.lostG); got != float64(want.lost) {
		t.Errorf("lost events metric = %v, want %d", got, want.lost)
	}
	if got := testutil.ToFloat64(in.m.quarantG); got != float64(want.quarantined) {
		t.Errorf("quarantined metric = %v, want %d", got, want.quarantined)
	}
	if want.log != "" && logs.FilterMessageSnippet(want.log).Len() == 0 {
		t.Errorf("no log message with %q in %v", want.log, messages(logs))
	}
	if want.nextSeq > 0 {
		if r, err := in.Append(context.Background(), item("after-open")); err != nil || r.Seq != want.nextSeq {
			t.Errorf("next append = %+v, %v; want seq %d", r, err, want.nextSeq)
		}
	}
}

func messages(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		out = append(out, e.Message)
	}
	return out
}

// Damaged state files (issue 15.4): Open refuses a store it cannot read
// safely, naming the file and the way out; it never starts silently empty,
// quarantines corrupt entries, and tells damage in the middle of the WAL
// (acknowledged records lost, reported) from a torn tail (never acknowledged).
func TestDamagedStateFiles(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   damageWant
	}{{
		name: "inbox.db truncated to half its pages",
		damage: func(t *testing.T, dir string) {
			session(t, dir, "a", 50)
			db := filepath.Join(dir, "inbox.db")
			if err := os.Truncate(db, boltDataSize(t, db)/2); err != nil {
				t.Fatal(err)
			}
		},
		want: damageWant{refuse: []string{"inbox.db is truncated", "restore inbox.db from a backup", "move it aside", "empty store"}},
	}, {
		name: "inbox.db meta pages overwritten",
		damage: func(t *testing.T, dir string) {
			session(t, dir, "a", 5)
			f, err := os.OpenFile(filepath.Join(dir, "inbox.db"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 64<<10), 0); err != nil {
				t.Fatal(err)
			}
		},
		want: damageWant{refuse: []string{"inbox.db", "no valid bbolt meta page", "move it aside"}},
	}, {
		name: "inbox.db page damaged (bbolt's own check would panic on its goroutine)",
		damage: func(t *testing.T, dir string) {
			session(t, dir, "a", 50)
			damagePage(t, filepath.Join(dir, "inbox.db"))
		},
		want: damageWant{refuse: []string{"inbox.db is damaged: page", "not a branch or leaf page", "move it aside"}},
	}, {
		name: "zero-byte inbox.db with WAL: rebuilt, older events reported lost",
		damage: func(t *testing.T, dir string) {
			session(t, dir, "a", 20) // only in inbox.db once the next open resets the WAL
			session(t, dir, "b", 30)
			if err := os.Truncate(filepath.Join(dir, "inbox.db"), 0); err != nil {
				t.Fatal(err)
			}
		},
		want: damageWant{entries: 30, lost: 20, log: "rebuilding the store from the log", nextSeq: 51},
	}, {
		name: "missing inbox.db with WAL: rebuilt",
		damage: func(t *testing.T, dir string) {
			session(t, dir, "a", 25)
			if err := os.Remove(filepath.Join(dir, "inbox.db")); err != nil {
				t.Fatal(err)
			}
		},
		want: damageWant{entries: 25, log: "rebuilding the store from the log", nextSeq: 26},
	}, {
		name: "corrupt entries quarantined",
		damage: func(t *testing.T, dir string) {
			session(t, dir, "a", 10)
			db := filepath.Join(dir, "inbox.db")
			putRaw(t, db, 4, []byte("p\x05{\"se"))
			v := encodeNew(&Entry{Seq: 7, UUID: "u", State: StatePending, Payload: json.RawMessage(`{}`)})
			v[0] = 'd' // state byte disagrees with the header
			putRaw(t, db, 7, v)
		},
		want: damageWant{entries: 8, quarantined: 2, log: "corrupt stored entry moved to quarantine", nextSeq: 11},
	}, {
		name: "WAL byte flipped in the middle: one acknowledged record lost and reported",
		damage: func(t *testing.T, dir string) {
			crashed(t, dir, 100)
			damageWAL(t, dir, func(offs []int, b []byte) { b[offs[39]+30] ^= 0x40 })
		},
		want: damageWant{entries: 99, lost: 1, log: "damaged record in the middle", nextSeq: 101},
	}, {
		name: "WAL block zeroed in the middle: the records it covered reported lost",
		damage: func(t *testing.T, dir string) {
			crashed(t, dir, 100)
			damageWAL(t, dir, func(offs []int, b []byte) { clear(b[offs[50]+5 : offs[53]+5]) }) // records 51..54
		},
		want: damageWant{entries: 96, lost: 4, log: "damaged record in the middle", nextSeq: 101},
	}, {
		name: "WAL torn tail: never acknowledged, nothing lost",
		damage: func(t *testing.T, dir string) {
			crashed(t, dir, 100)
			damageWAL(t, dir, func(offs []int, b []byte) {
				end := offs[len(offs)-1]
				binary.BigEndian.PutUint32(b[end:], 600)
				binary.BigEndian.PutUint64(b[end+8:], 101)
				copy(b[end+16:], `p{"seq":101`) // the rest of the write never reached the disk
			})
		},
		want: damageWant{entries: 100, log: "torn or stale record", nextSeq: 101},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.damage(t, dir)
			before := snapshot(t, dir)
			openDamaged(t, dir, c.want)
			if len(c.want.refuse) > 0 && snapshot(t, dir) != before {
				t.Error("a refused open changed the state files")
			}
		})
	}
}

// snapshot sums the state directory's file contents, to tell that a refusal
// left them alone.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%d:%x;", e.Name(), len(data), crc32.Checksum(data, crcTable))
	}
	return b.String()
}

// After the refusal of a truncated inbox.db, moving it aside (as the error
// says) starts a store rebuilt from the WAL with every event of the session.
func TestTruncatedStoreMovedAsideIsRebuiltFromWAL(t *testing.T) {
	dir := t.TempDir()
	session(t, dir, "a", 40)
	db := filepath.Join(dir, "inbox.db")
	if err := os.Truncate(db, boltDataSize(t, db)/2); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrDamaged) {
		t.Fatalf("open a truncated store: %v", err)
	}
	if err := os.Rename(db, db+".damaged"); err != nil {
		t.Fatal(err)
	}
	openDamaged(t, dir, damageWant{entries: 40, log: "rebuilding the store from the log", nextSeq: 41})
}

// The quarantine bucket keeps the raw bytes and the reason.
func TestQuarantineKeepsRawBytesAndReason(t *testing.T) {
	dir := t.TempDir()
	session(t, dir, "a", 3)
	raw := []byte("p\x05{\"se")
	putRaw(t, filepath.Join(dir, "inbox.db"), 2, raw)
	in := open(t, dir, Options{})
	if e, err := in.Get(2); err != nil || e != nil {
		t.Errorf("quarantined entry still readable: %+v, %v", e, err)
	}
	if p, err := in.Pending(0, 10); err != nil || len(p) != 2 {
		t.Errorf("pending = %d, %v; want the 2 intact entries", len(p), err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "inbox.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got []quarantined
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuarantine).ForEach(func(_, v []byte) error {
			var q quarantined
			if err := json.Unmarshal(v, &q); err != nil {
				return err
			}
			got = append(got, q)
			return nil
		})
	})
	if len(got) != 1 || got[0].Seq != 2 || string(got[0].Raw) != string(raw) || got[0].Reason == "" {
		t.Fatalf("quarantine = %+v", got)
	}
}
