// crash_test.go kills the receiver binary with SIGKILL in the middle of an
// event stream and checks that no acknowledged event is lost or doubled.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// buildReceiver builds this command into a temporary directory.
func buildReceiver(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "receiver")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := lab.FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// testToken is a webhook token the receiver's token policy accepts.
const testToken = "crash-test-webhook-token-0123456789abcdef"

// startReceiver runs the built receiver on addr and state, appending to
// logPath, and waits until /readyz answers 200.
func startReceiver(t *testing.T, bin, addr, state, logPath string) *lab.Receiver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := lab.StartReceiver(ctx, lab.ReceiverSpec{
		Bin: bin, Addr: addr, StateDir: state, Rulebook: "testdata/count.yml", Token: testToken,
		Args: []string{"--log-level", "warn"}, Log: logPath, AppendLog: true,
		ReadyPath: "/readyz", PollEvery: 20 * time.Millisecond,
	})
	if err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("receiver did not become ready: %v\n%s", err, b)
	}
	return p
}

// stream sends events "ev-<i>" to one receiver address from several
// clients and remembers which got a 200.
type stream struct {
	addr    string
	client  *http.Client
	acked   []atomic.Bool
	nAcked  atomic.Int64
	next    atomic.Int64
	down    atomic.Bool // set at the kill: later events are not sent
	unacked sync.Map    // sent, no 200 before the kill: resent after the restart
	wg      sync.WaitGroup
}

func newStream(addr string, total int) *stream {
	return &stream{addr: addr, client: &http.Client{Timeout: 10 * time.Second}, acked: make([]atomic.Bool, total)}
}

// send posts event i and reports whether the receiver acknowledged it.
func (s *stream) send(i int) bool {
	body := fmt.Appendf(nil, `{"id":"ev-%d","i":%d,"kind":"Test"}`, i, i)
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/endpoint", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := s.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// start runs the clients until every event was sent or the stream is down.
func (s *stream) start(clients int) {
	for range clients {
		s.wg.Go(func() {
			for {
				i := int(s.next.Add(1)) - 1
				if i >= len(s.acked) {
					return
				}
				if !s.down.Load() && s.send(i) {
					s.acked[i].Store(true)
					s.nAcked.Add(1)
				} else {
					s.unacked.Store(i, true)
				}
			}
		})
	}
}

// killAfter SIGKILLs the receiver once n events were acknowledged, while the
// stream runs, and returns how many were acknowledged at the kill.
func (s *stream) killAfter(t *testing.T, p *lab.Receiver, n int64) int64 {
	t.Helper()
	waitUntil := time.Now().Add(2 * time.Minute)
	for s.nAcked.Load() < n {
		if time.Now().After(waitUntil) {
			s.down.Store(true)
			s.wg.Wait()
			t.Fatalf("only %d events acknowledged in 2 minutes", s.nAcked.Load())
		}
		time.Sleep(time.Millisecond)
	}
	s.down.Store(true)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	killedAt := s.nAcked.Load()
	s.wg.Wait()
	return killedAt
}

// resend sends every unacknowledged event again until it is accepted, then
// checks that every event was acknowledged once, and returns how many it sent.
func (s *stream) resend(t *testing.T) int {
	t.Helper()
	resent := 0
	s.unacked.Range(func(k, _ any) bool {
		i := k.(int)
		for try := 0; !s.send(i); try++ {
			if try > 50 {
				t.Fatalf("event %d not accepted after restart", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
		s.acked[i].Store(true)
		resent++
		return true
	})
	for i := range s.acked {
		if !s.acked[i].Load() {
			t.Fatalf("event %d never acknowledged", i)
		}
	}
	return resent
}

// eventsView is the receiver's /api/v1/events answer, as far as the test reads it.
type eventsView struct {
	Events []struct {
		ID    string   `json:"id"`
		State string   `json:"state"`
		Rules []string `json:"rules"`
	} `json:"events"`
	Pending int `json:"pending"`
}

// awaitProcessed polls /api/v1/events until nothing is pending and at least
// total events are finished, for up to 60s.
func (s *stream) awaitProcessed(t *testing.T, total int) eventsView {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.addr+"/api/v1/events?limit=20000", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v eventsView
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		finished := 0
		for _, e := range v.Events {
			if e.State != "pending" {
				finished++
			}
		}
		if v.Pending == 0 && finished >= total {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d events listed, %d pending", len(v.Events), v.Pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkExactlyOnce: every event done by the one rule, each stored once.
func checkExactlyOnce(t *testing.T, v eventsView, total int) {
	t.Helper()
	seen := map[string]int{}
	for _, e := range v.Events {
		seen[e.ID]++
		if e.State != "done" || len(e.Rules) != 1 || e.Rules[0] != "Count events/Every numbered event" {
			t.Fatalf("event %s: state %s rules %v", e.ID, e.State, e.Rules)
		}
	}
	for i := range total {
		if n := seen[fmt.Sprintf("ev-%d", i)]; n != 1 {
			t.Errorf("event ev-%d stored %d times", i, n)
		}
	}
	if len(v.Events) != total {
		t.Errorf("%d events stored, want %d", len(v.Events), total)
	}
}

// kill -9 in the middle of a stream of 5,000 events: every event that got a
// 200 before the kill, and every event sent after the restart, is processed,
// each exactly once.
func TestKill9LosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the receiver binary")
	}
	const total, clients = 5000, 16
	bin := buildReceiver(t)
	addr := freeAddr(t)
	state := filepath.Join(t.TempDir(), "state")
	logPath := filepath.Join(t.TempDir(), "receiver.log")
	p := startReceiver(t, bin, addr, state, logPath)

	s := newStream(addr, total)
	s.start(clients)
	t.Logf("killed after %d acknowledged events", s.killAfter(t, p, 1500))

	p = startReceiver(t, bin, addr, state, logPath)
	defer func() { _, _ = p.Stop(time.Minute) }()
	t.Logf("%d events sent again after the restart", s.resend(t))

	checkExactlyOnce(t, s.awaitProcessed(t, total), total)
}
