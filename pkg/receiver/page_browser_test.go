// The status page in a real browser: Debian's headless Chromium (driven by
// chromedp) logs in with the operator token through the form and reads the
// page of a receiver whose state comes from real local jobs (feedVolumes, a
// readiness check with the fence up, a failover report): the rows a person
// sees, worst first, the breach marker, each readiness fact with ok or
// FAILED and its age, the latest reports and the failover report's steps and
// volumes behind its link, a working log link, and no console errors. A screenshot is saved
// in the test's output directory (OCPDR_TEST_ARTIFACTS, else a temp dir,
// named in the log).
package receiver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium; its absence fails the test (hack/deps.sh
// installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: the status page browser test needs Debian's chromium (run `make deps` or `apt-get install -y chromium`)")
	return ""
}

// browser starts headless chromium and collects the console's errors,
// warnings and exceptions; call the returned func to read them.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	var mu sync.Mutex
	var problems []string
	lctx, stop := context.WithCancel(ctx)
	messages := chromedp.Console(lctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	return ctx, func() []string {
		stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return problems
	}
}

// text reads the visible text of the first element sel finds.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

func screenshotDir(t *testing.T) string {
	if d := os.Getenv("OCPDR_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

func TestStatusPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: runs in `make test` (go test without -short)")
	}
	cfg := volumeConfig(t)
	r := serve(t, cfg, syncEngine{})
	base := "http://" + r.addr
	feedVolumes(t, base)
	launchAndWait(t, base, fencedReadiness)
	ctx, problems := browser(t)

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible("#token")); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	loginText := text(t, ctx, "body")
	if err := chromedp.Do(ctx, chromedp.SendKeys("#token", testOperator), chromedp.Submit("#token"),
		chromedp.WaitVisible("#volume-table")); err != nil {
		t.Fatalf("log in: %v", err)
	}
	summary, rows := text(t, ctx, "#summary"), text(t, ctx, "#volume-table tbody")
	readiness, breachRow := text(t, ctx, "#readiness"), text(t, ctx, "tr.breach")
	fence, backup := text(t, ctx, `tr[data-check="fence"]`), text(t, ctx, `tr[data-check="backup"]`)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(screenshotDir(t), "status-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)

	if !strings.Contains(loginText, "Operator token") {
		t.Errorf("login form not shown: %q", loginText)
	}
	for _, want := range []string{"Protected VMs: 2", "Protected volumes: 3", "In breach of RPO: 2", "Failing: 1"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary %q lacks %q", summary, want)
		}
	}
	lines := strings.Split(strings.TrimSpace(rows), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "failing") || !strings.Contains(lines[0], "pv-bad") ||
		!strings.Contains(lines[0], "rsync: connection refused") || !strings.Contains(lines[1], "pv-old") || !strings.Contains(lines[2], "pv-fresh") {
		t.Errorf("volume rows, worst first:\n%s", rows)
	}
	if !strings.Contains(breachRow, "RPO BREACH") || !strings.Contains(breachRow, "pv-old") || !strings.Contains(breachRow, "60m") {
		t.Errorf("breach row %q", breachRow)
	}
	if !strings.Contains(readiness, "Last readiness check: job") || !strings.Contains(readiness, "Failover ready: NOT READY") {
		t.Errorf("readiness panel %q", readiness)
	}
	if !strings.Contains(fence, "Fence state") || !strings.Contains(fence, "FAILED") || !strings.Contains(fence, "the fence is up") ||
		!regexp.MustCompile(`\d+s`).MatchString(fence) {
		t.Errorf("fence fact %q: want FAILED with its detail and age", fence)
	}
	if !strings.Contains(backup, "Newest completed backup") || !strings.Contains(backup, "ok") || !strings.Contains(backup, "velero-daily completed") {
		t.Errorf("backup fact %q", backup)
	}
	// The log link of the failed volume's job works with the session cookie.
	if err := chromedp.Do(ctx, chromedp.Click("tr.failing a"), chromedp.WaitVisible("pre")); err != nil {
		t.Fatalf("open log: %v", err)
	}
	logText := text(t, ctx, "pre")
	if !strings.Contains(logText, "Sync failed: rsync: connection refused") {
		t.Errorf("job log %q", logText)
	}
	// A failover reports: the latest reports list it first with its summary,
	// and its link opens it: steps with timings, per-volume rows.
	launchAndWait(t, base, failoverReport)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible("#report-table")); err != nil {
		t.Fatalf("reload the page: %v", err)
	}
	reports := text(t, ctx, "#report-table tbody")
	if lines := strings.Split(strings.TrimSpace(reports), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "failover") ||
		!strings.Contains(lines[0], "pvcs 2, pvs 2, vms 1") || !strings.HasPrefix(lines[1], "readiness\tnot-ready") {
		t.Errorf("latest reports (failover, readiness, event-sync):\n%s", reports)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`a[href="/reports/failover"]`), chromedp.WaitVisible("#report-steps")); err != nil {
		t.Fatalf("open the failover report: %v", err)
	}
	steps, vols, result := text(t, ctx, "#report-steps tbody"), text(t, ctx, "#report-volumes tbody"), text(t, ctx, "#report-result")
	if shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.WriteFile(filepath.Join(filepath.Dir(path), "report-failover.png"), shot, 0o644)
	}
	if result != "ok" || !strings.Contains(steps, "parse backup velero-daily") || !strings.Contains(steps, "3.25") ||
		!strings.Contains(steps, "final data sync") || !strings.Contains(steps, "41.50") {
		t.Errorf("failover report result %q, steps:\n%s", result, steps)
	}
	if vl := strings.Split(strings.TrimSpace(vols), "\n"); len(vl) != 2 || !strings.Contains(vl[0], "pv-fresh") || !strings.Contains(vl[1], "rsync: connection refused") {
		t.Errorf("failover report volumes:\n%s", vols)
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("console problems: %v", p)
	}
}
