package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSlowBodiesDoNotStarveEvents (issue 15.8): clients that send a body a
// byte at a time are cut off after the read timeout and cannot hold the
// connection budget; events posted meanwhile are acknowledged and stored.
func TestSlowBodiesDoNotStarveEvents(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	r := startReceiver(t, state, "--read-timeout", "1s", "--max-connections", "16")
	addr := strings.TrimPrefix(r.url, "http://")
	const slow = 40 // more than the connection budget
	cut := make(chan time.Duration, slow)
	for i := 0; i < slow; i++ {
		go func() { cut <- slowPost(addr, r.token) }()
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var acked []string
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("beside-slow-%02d", i)
		for attempt := 0; ; attempt++ {
			code, body := r.post(ctx, id, 64)
			if code == 200 {
				acked = append(acked, id)
				break
			}
			if attempt > 50 {
				t.Fatalf("event %s never acknowledged: %d %s", id, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	longest := time.Duration(0)
	for i := 0; i < slow; i++ {
		longest = max(longest, <-cut)
	}
	if longest > 15*time.Second {
		t.Errorf("a slow-body connection stayed open %s with a 1 s read timeout", longest)
	}
	missing := r.awaitStored(t, acked, 10*time.Second)
	record(t, Row{Fault: fmt.Sprintf("%d clients sending bodies a byte every 100 ms (read timeout 1 s, 16 connections)", slow),
		Acknowledged: len(acked), Found: len(acked) - len(missing), Lost: len(missing),
		Note: fmt.Sprintf("slow connections cut after at most %s", longest.Round(100*time.Millisecond))})
}

// slowPost opens a connection, announces a 1 MiB body and trickles it; it
// returns how long the server kept the connection.
func slowPost(addr, token string) time.Duration {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /endpoint HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 1048576\r\n\r\n{", token)
	go func() { _, _ = io.Copy(io.Discard, c) }()
	for time.Since(start) < 30*time.Second {
		if _, err := c.Write([]byte(" ")); err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}
