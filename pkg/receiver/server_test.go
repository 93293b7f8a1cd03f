package receiver

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The token policy: a token of at least 32 characters that is not the
// shipped placeholder, or none with --insecure-no-auth.
func TestWebhookTokenPolicy(t *testing.T) {
	cases := []struct {
		name     string
		token    string
		insecure bool
		want     []string // substrings of the error; none: accepted
	}{
		{"empty refused", "", false, []string{"no webhook token", "RECEIVER_WEBHOOK_TOKEN", "--webhook-token-file", "--insecure-no-auth"}},
		{"empty with --insecure-no-auth allowed", "", true, nil},
		{"placeholder refused", PlaceholderWebhookToken, false, []string{"placeholder", "RECEIVER_WEBHOOK_TOKEN", "--webhook-token-file"}},
		{"31 characters refused", strings.Repeat("x", 31), false, []string{"has 31 characters, at least 32", "RECEIVER_WEBHOOK_TOKEN"}},
		{"32 characters accepted", strings.Repeat("x", 32), false, nil},
		{"token with --insecure-no-auth refused", testToken, true, []string{"--insecure-no-auth", "choose one"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := baseConfig(t)
			cfg.WebhookToken, cfg.InsecureNoAuth = c.token, c.insecure
			err := cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

// The placeholder refused is the one deploy/examples/secrets.yaml ships.
func TestPlaceholderIsTheShippedOne(t *testing.T) {
	b, err := os.ReadFile("../../deploy/examples/secrets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "webhook-token: "+PlaceholderWebhookToken+"\n") {
		t.Fatalf("deploy/examples/secrets.yaml does not ship %s as the webhook token", PlaceholderWebhookToken)
	}
}

// With --insecure-no-auth the receiver accepts events without a token and
// says so at start.
func TestInsecureNoAuthWarns(t *testing.T) {
	cfg := baseConfig(t)
	cfg.WebhookToken, cfg.InsecureNoAuth = "", true
	core, logs := observer.New(zapcore.WarnLevel)
	r := serveLog(t, cfg, recordEngine{}, zap.New(core))
	if s, body := do(t, http.DefaultClient, "POST", "http://"+r.addr+"/endpoint", "", `{}`); s != 200 {
		t.Fatalf("POST without a token: %d %s", s, body)
	}
	if logs.FilterMessageSnippet("WEBHOOK AUTHENTICATION IS DISABLED (--insecure-no-auth)").Len() != 1 {
		t.Errorf("no warning; logged: %v", logs.All())
	}
}

// slowConn sends request (headers and the start of a body) to addr and then
// trickles a byte every 100 ms, like a slowloris client. It returns the
// connection, closed at the end of the test.
func slowConn(t *testing.T, addr, request string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			time.Sleep(100 * time.Millisecond)
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	return c
}

func slowPost(path, token string) string {
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	return "POST " + path + " HTTP/1.1\r\nHost: receiver\r\n" + auth + "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
}

// A client that sends its body too slowly is cut off after --read-timeout on
// both listeners, with or without a valid token.
func TestSlowBodyIsCutOff(t *testing.T) {
	cfg := baseConfig(t)
	cfg.HealthListen = "127.0.0.1:0"
	cfg.ReadTimeout = 500 * time.Millisecond
	r := serve(t, cfg, recordEngine{})
	cases := []struct {
		name, addr, request string
	}{
		{"webhook, authenticated", r.addr, slowPost("/endpoint", testToken)},
		{"webhook, unauthenticated", r.addr, slowPost("/endpoint", "")},
		{"operator API", r.addr, slowPost("/api/v1/events", testToken)},
		{"health listener", r.health, slowPost("/readyz", "")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			conn := slowConn(t, c.addr, c.request)
			_ = conn.SetReadDeadline(start.Add(5 * time.Second))
			_, err := io.ReadAll(conn)
			elapsed := time.Since(start)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open after %v (read timeout %v)", elapsed, cfg.ReadTimeout)
			}
			if elapsed < cfg.ReadTimeout/2 || elapsed > 3*time.Second {
				t.Fatalf("closed after %v (%v), want about %v", elapsed, err, cfg.ReadTimeout)
			}
		})
	}
}

// Beyond --max-connections a connection waits to be served, the separate
// health listener still answers, and a freed slot serves the next one.
func TestConnectionCap(t *testing.T) {
	cfg := baseConfig(t)
	cfg.HealthListen = "127.0.0.1:0"
	cfg.MaxConnections = 2
	cfg.ShutdownTimeout = 5 * time.Second
	r := serve(t, cfg, recordEngine{})
	held := []net.Conn{slowConn(t, r.addr, slowPost("/endpoint", testToken)), slowConn(t, r.addr, slowPost("/endpoint", ""))}
	get := func(addr string, timeout time.Duration) error {
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/events?limit=1", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 && addr == r.addr {
			return errors.New(resp.Status)
		}
		return nil
	}
	if err := get(r.addr, 500*time.Millisecond); err == nil {
		t.Fatal("a third connection was served with --max-connections 2")
	}
	if err := get(r.health, 2*time.Second); err != nil {
		t.Fatalf("health listener: %v", err)
	}
	_ = held[0].Close()
	if err := get(r.addr, 5*time.Second); err != nil {
		t.Fatalf("after a connection closed: %v", err)
	}
}
