package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testToken is a webhook token the receiver's token policy accepts.
const testToken = "crash-test-webhook-token-0123456789abcdef"

type proc struct {
	cmd  *exec.Cmd
	done chan error
}

func startReceiver(t *testing.T, bin, addr, state, logPath string) *proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--listen", addr, "--rulebook", "testdata/count.yml", "--state-dir", state, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "RECEIVER_WEBHOOK_TOKEN="+testToken)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case err := <-p.done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("receiver exited: %v\n%s", err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("receiver did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill -9 in the middle of a stream of 5,000 events: every event that got a
// 200 before the kill, and every event sent after the restart, is processed,
// each exactly once.
func TestKill9LosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the receiver binary")
	}
	bin := buildReceiver(t)
	addr := freeAddr(t)
	state := filepath.Join(t.TempDir(), "state")
	logPath := filepath.Join(t.TempDir(), "receiver.log")
	p := startReceiver(t, bin, addr, state, logPath)

	const total, clients = 5000, 16
	acked := make([]atomic.Bool, total)
	var nAcked atomic.Int64
	var next atomic.Int64
	var down atomic.Bool
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(i int) bool {
		body := fmt.Appendf(nil, `{"id":"ev-%d","i":%d,"kind":"Test"}`, i, i)
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/endpoint", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	var wg sync.WaitGroup
	var unacked sync.Map // sent, no 200 before the kill: resent after the restart
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				if !down.Load() && send(i) {
					acked[i].Store(true)
					nAcked.Add(1)
				} else {
					unacked.Store(i, true)
				}
			}
		})
	}
	// Kill while the stream runs.
	waitUntil := time.Now().Add(2 * time.Minute)
	for nAcked.Load() < 1500 {
		if time.Now().After(waitUntil) {
			down.Store(true)
			wg.Wait()
			t.Fatalf("only %d events acknowledged in 2 minutes", nAcked.Load())
		}
		time.Sleep(time.Millisecond)
	}
	down.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	killedAt := nAcked.Load()
	wg.Wait()
	t.Logf("killed after %d acknowledged events", killedAt)

	p = startReceiver(t, bin, addr, state, logPath)
	defer func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
	}()
	resent := 0
	unacked.Range(func(k, _ any) bool {
		i := k.(int)
		for try := 0; !send(i); try++ {
			if try > 50 {
				t.Fatalf("event %d not accepted after restart", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
		acked[i].Store(true)
		resent++
		return true
	})
	t.Logf("%d events sent again after the restart", resent)
	for i := range acked {
		if !acked[i].Load() {
			t.Fatalf("event %d never acknowledged", i)
		}
	}

	type view struct {
		Events []struct {
			ID    string   `json:"id"`
			State string   `json:"state"`
			Rules []string `json:"rules"`
		} `json:"events"`
		Pending int `json:"pending"`
	}
	var v view
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/events?limit=20000", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		v = view{}
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
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d events listed, %d pending", len(v.Events), v.Pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
