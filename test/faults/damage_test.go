package faults

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// startRefused runs the receiver on stateDir as startReceiver does and
// expects it to refuse to start; it returns what the receiver printed.
func startRefused(t *testing.T, stateDir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, receiverBin(t), "serve", "--listen", "127.0.0.1:0", "--state-dir", stateDir,
		"--rulebook", filepath.Join(repoRoot(t), "rulebooks", "ocp_dr_events.yml"),
		"--job-log-dir", filepath.Join(t.TempDir(), "jobs"))
	cmd.Env = append(os.Environ(), "RECEIVER_WEBHOOK_TOKEN="+testToken)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the receiver started on damaged state instead of refusing:\n%s", out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the receiver exited with %v, want a refusal:\n%s", err, out)
	}
	return string(out)
}

// reported sums what a receiver's log says it found lost at start-up:
// acknowledged events neither in the store nor in the WAL, and entries
// moved to quarantine.
func reported(t *testing.T, log string) int {
	t.Helper()
	n := 0
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg         string `json:"msg"`
			LostEvents  int    `json:"lost_events"`
			Quarantined int    `json:"entries"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch {
		case strings.Contains(l.Msg, "acknowledged events lost to damaged state files"):
			n += l.LostEvents
		case strings.Contains(l.Msg, "corrupt stored entries quarantined"):
			n += l.Quarantined
		}
	}
	return n
}

// damageRun is one damage mode's counts.
type damageRun struct {
	acked    []string
	log      string // the log of the start on damaged state
	reported int
}

// ingest starts a receiver on state, posts n events "<prefix>-<i>" and
// stops it, returning the acknowledged ids.
func ingest(t *testing.T, ctx context.Context, state, prefix string, n int) []string {
	t.Helper()
	r := startReceiver(t, state)
	s := &posting{other: map[int]int{}, reasons: map[string]bool{}}
	s.send(ctx, r, prefix, n, 4, 256)
	if len(s.acked) != n {
		t.Fatalf("%d of %d events acknowledged (answers %v)", len(s.acked), n, s.other)
	}
	r.stop(15 * time.Second)
	return s.acked
}

// restart starts the receiver on damaged state, checks that its log has
// want, and stops it.
func restart(t *testing.T, state, want string) string {
	t.Helper()
	r := startReceiver(t, state)
	r.stop(15 * time.Second)
	log := r.logText()
	if !strings.Contains(log, want) {
		t.Errorf("the log after the restart does not say %q:\n%s", want, log)
	}
	return log
}

// boltDataSize is the store's pgid × page size.
func boltDataSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	_ = db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size
}

// walOffsets returns the offsets of the records in a WAL file (uint32 len |
// uint32 CRC-32C | uint64 seq | entry) and the offset after the last.
func walOffsets(b []byte) []int {
	tab := crc32.MakeTable(crc32.Castagnoli)
	var offs []int
	off := 0
	for off+8 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if n < 8 || off+8+n > len(b) || crc32.Checksum(b[off+8:off+8+n], tab) != binary.BigEndian.Uint32(b[off+4:]) {
			break
		}
		offs = append(offs, off)
		off += 8 + n
	}
	return append(offs, off)
}

func editFile(t *testing.T, path string, fn func(b []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fn(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// walOnly leaves the events of one session only in the WAL, as a crash
// before the store took them does: the store is rolled back to a copy taken
// before they were posted.
func walOnly(t *testing.T, ctx context.Context, state string, n int) []string {
	t.Helper()
	r := startReceiver(t, state)
	r.stop(15 * time.Second)
	db := filepath.Join(state, "inbox.db")
	copyFile(t, db, db+".before")
	acked := ingest(t, ctx, state, "wal", n)
	if err := os.Rename(db+".before", db); err != nil {
		t.Fatal(err)
	}
	return acked
}

// refusedDB damages inbox.db after a session, expects the receiver to refuse
// to start with a message naming the file and saying what to do, then does
// what it says: moves the file aside, and the store is rebuilt from the WAL.
func refusedDB(t *testing.T, ctx context.Context, state, says string, damage func(t *testing.T, db string)) damageRun {
	acked := ingest(t, ctx, state, "db", 200)
	db := filepath.Join(state, "inbox.db")
	damage(t, db)
	out := startRefused(t, state)
	for _, want := range []string{db + " " + says, "restore inbox.db from a backup", "move it aside", "empty store"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	if err := os.Rename(db, db+".damaged"); err != nil {
		t.Fatal(err)
	}
	log := restart(t, state, "rebuilding the store from the log")
	return damageRun{acked: acked, log: out + log, reported: reported(t, log)}
}

func truncatedDB(t *testing.T, ctx context.Context, state string) damageRun {
	return refusedDB(t, ctx, state, "is truncated", func(t *testing.T, db string) {
		if err := os.Truncate(db, boltDataSize(t, db)/2); err != nil {
			t.Fatal(err)
		}
	})
}

// damagedPage overwrites the type flags of the events bucket's root page,
// which bbolt's own check at open would panic on, on a goroutine of its own.
func damagedPage(t *testing.T, ctx context.Context, state string) damageRun {
	return refusedDB(t, ctx, state, "is damaged", func(t *testing.T, path string) {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var root int64
		_ = db.View(func(tx *bolt.Tx) error { root = int64(tx.Bucket([]byte("events")).Root()); return nil })
		ps := int64(db.Info().PageSize)
		_ = db.Close()
		editFile(t, path, func(b []byte) { copy(b[root*ps+8:], []byte{0x0b, 0x30}) })
	})
}

func zeroByteDB(t *testing.T, ctx context.Context, state string) damageRun {
	acked := ingest(t, ctx, state, "first", 100) // only in inbox.db after the next start
	acked = append(acked, ingest(t, ctx, state, "second", 100)...)
	if err := os.Truncate(filepath.Join(state, "inbox.db"), 0); err != nil {
		t.Fatal(err)
	}
	log := restart(t, state, "rebuilding the store from the log")
	return damageRun{acked: acked, log: log, reported: reported(t, log)}
}

func corruptEntry(t *testing.T, ctx context.Context, state string) damageRun {
	acked := ingest(t, ctx, state, "entry", 100)
	db, err := bolt.Open(filepath.Join(state, "inbox.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], 37)
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("events")).Put(key[:], []byte("p\x05{\"se")) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	log := restart(t, state, `"seq":37`)
	return damageRun{acked: acked, log: log, reported: reported(t, log)}
}

func walFlippedByte(t *testing.T, ctx context.Context, state string) damageRun {
	acked := walOnly(t, ctx, state, 100)
	editFile(t, filepath.Join(state, "inbox.wal.0"), func(b []byte) { b[walOffsets(b)[49]+40] ^= 0x20 })
	log := restart(t, state, "damaged record in the middle of the write-ahead log")
	return damageRun{acked: acked, log: log, reported: reported(t, log)}
}

func walTornTail(t *testing.T, ctx context.Context, state string) damageRun {
	acked := walOnly(t, ctx, state, 100)
	editFile(t, filepath.Join(state, "inbox.wal.0"), func(b []byte) {
		offs := walOffsets(b)
		end := offs[len(offs)-1]
		binary.BigEndian.PutUint32(b[end:], 900) // a write the crash cut short: never acknowledged
		binary.BigEndian.PutUint64(b[end+8:], 101)
		copy(b[end+16:], `p{"seq":101`)
	})
	log := restart(t, state, "torn or stale record")
	return damageRun{acked: acked, log: log, reported: reported(t, log)}
}

// TestDamagedStateFiles (issue 15, item 4): the receiver's state files are
// damaged while it is stopped. It must refuse to start with a message that
// names the file and the way out, or start with every acknowledged event
// that survived the damage and report, by count, those the damage itself
// destroyed; nothing may go missing unreported, and it never starts silently
// empty.
func TestDamagedStateFiles(t *testing.T) {
	modes := []struct {
		fault string
		run   func(*testing.T, context.Context, string) damageRun
	}{
		{"inbox.db truncated to half its pages: refused at start naming the file; moved aside as told, rebuilt from the WAL", truncatedDB},
		{"inbox.db page damaged (type flags of a b+tree page overwritten): refused at start naming the file; moved aside as told, rebuilt from the WAL", damagedPage},
		{"inbox.db truncated to 0 bytes after two sessions: rebuilt from the WAL (second session)", zeroByteDB},
		{"corrupt entry in inbox.db's events bucket: quarantined, receiver starts", corruptEntry},
		{"inbox.wal.0 byte flipped in the middle (events not yet in inbox.db)", walFlippedByte},
		{"inbox.wal.0 torn tail: a cut-short unacknowledged write after the last record", walTornTail},
	}
	for _, m := range modes {
		t.Run(m.fault, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			state := filepath.Join(t.TempDir(), "state")
			d := m.run(t, ctx, state)
			found := len(d.acked) - len(lost(d.acked, storedIDs(t, state)))
			record(t, Row{Fault: m.fault, Acknowledged: len(d.acked), Found: found,
				Lost: len(d.acked) - found - d.reported,
				Note: fmt.Sprintf("%d reported lost or quarantined by the receiver", d.reported)})
		})
	}
}
