package ansible_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// smtpSink is a minimal SMTP server on loopback that keeps every message.
type smtpSink struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
}

func newSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpSink) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *smtpSink) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(line string) { fmt.Fprintf(c, "%s\r\n", line) }
	say("220 sink ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250-sink")
			say("250 8BITMIME")
		case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"), strings.HasPrefix(cmd, "RSET"), strings.HasPrefix(cmd, "NOOP"):
			say("250 OK")
		case cmd == "DATA":
			say("354 go ahead")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, b.String())
			s.mu.Unlock()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("502 not implemented")
		}
	}
}

func (s *smtpSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

// The periodic sync report is e-mailed: the Markdown report is the body and
// the JSON report is attached. A dead SMTP server leaves the sync result
// intact and is recorded as a failed delivery.
func TestReportEmail(t *testing.T) {
	l := lab.Get(t)
	sink := newSMTPSink(t)
	reports := t.TempDir()
	vars := map[string]any{
		"ocpdr_report_dir": reports, "ocpdr_report_mail_to": []string{"dr-team@example.com"},
		"ocpdr_report_mail_from": "ocpv-dr@example.com", "ocpdr_report_smtp_host": "127.0.0.1",
		"ocpdr_report_smtp_port": sink.port(), "ocpdr_report_smtp_secure": "never",
	}
	l.MustPlaybook(t, "playbooks/scheduled/execute_periodic_sync.yml", vars)
	msgs := sink.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages arrived, want 1", len(msgs))
	}
	m, err := mail.ReadMessage(strings.NewReader(msgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(subj, "ocpv-dr periodic-sync: ") || m.Header.Get("To") != "dr-team@example.com" {
		t.Errorf("subject %q to %q", subj, m.Header.Get("To"))
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var body string
	var attached map[string]any
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(part)
		if part.Header.Get("Content-Transfer-Encoding") == "base64" {
			data = decodeBase64(t, data)
		}
		if strings.HasSuffix(part.FileName(), ".json") {
			if err := json.Unmarshal(data, &attached); err != nil {
				t.Fatalf("attachment %s is not JSON: %v", part.FileName(), err)
			}
		} else if body == "" {
			body = string(data)
		}
	}
	if !strings.Contains(body, "# ocpv-dr periodic-sync:") || !strings.Contains(body, "## Volumes") {
		t.Errorf("body is not the Markdown report:\n%s", body)
	}
	if attached["kind"] != "periodic-sync" || attached["volumes"] == nil {
		t.Errorf("attached JSON is not the report: %v", attached)
	}

	// A dead SMTP server: the sync still succeeds, the failure is logged and recorded.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	vars["ocpdr_report_smtp_port"] = deadPort
	vars["ocpdr_report_dir"] = t.TempDir()
	out := l.MustPlaybook(t, "playbooks/scheduled/execute_periodic_sync.yml", vars)
	if !strings.Contains(out, "Report could not be e-mailed") {
		t.Errorf("the failed delivery is not logged:\n%s", tailLines(out, 30))
	}
	matches, _ := filepath.Glob(filepath.Join(vars["ocpdr_report_dir"].(string), "periodic-sync-*.json"))
	if len(matches) != 1 {
		t.Fatalf("reports: %v", matches)
	}
	b, _ := os.ReadFile(matches[0])
	var rep struct {
		Result   string            `json:"result"`
		Delivery map[string]string `json:"delivery"`
	}
	_ = json.Unmarshal(b, &rep)
	if !strings.HasPrefix(rep.Delivery["mail"], "failed") || rep.Result == "" || rep.Result == "failed" {
		t.Errorf("report result %q delivery %v: want the sync's own result and a failed mail delivery", rep.Result, rep.Delivery)
	}
}

func decodeBase64(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(b)), ""))
	if err != nil {
		t.Fatalf("base64 part: %v", err)
	}
	return out
}
