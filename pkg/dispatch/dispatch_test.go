// Tests of the dispatcher: lanes, coalescing, retries, outcomes, artifacts.

package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

// fakeEngine fires "sync" for ADDED/MODIFIED and "delete" for DELETED forwarder
// events; bodies with "kind": "Noise" match nothing.
type fakeEngine struct {
	processed atomic.Int64
	mu        sync.Mutex
	facts     []map[string]any
	posted    []map[string]any
	extra     map[string]any // args merged into every fired action
}

func (e *fakeEngine) Process(ev map[string]any) ([]Fired, error) {
	defer e.processed.Add(1)
	p, _ := ev["payload"].(map[string]any)
	if p["kind"] == "Noise" {
		return nil, nil
	}
	if p["kind"] == "Broken" {
		return nil, fmt.Errorf("cannot evaluate")
	}
	if p["kind"] == "Panic" {
		panic("engine bug")
	}
	rule, name := "sync", "EDA - Sync NFS PV to DR"
	if p["type"] == "DELETED" {
		rule, name = "delete", "EDA - Delete NFS PV from DR"
	}
	args := map[string]any{"name": name, "organization": "Default"}
	for k, v := range e.extra {
		args[k] = v
	}
	return []Fired{{Ruleset: "rs", Rule: rule, Action: "run_job_template", Args: args, MatchingEvents: map[string]any{"m": ev}}}, nil
}

func (e *fakeEngine) PostEvent(_ string, ev map[string]any) ([]Fired, error) {
	e.mu.Lock()
	e.posted = append(e.posted, ev)
	e.mu.Unlock()
	return nil, nil
}

func (e *fakeEngine) SetFact(ruleset string, f map[string]any) ([]Fired, error) {
	e.mu.Lock()
	e.facts = append(e.facts, f)
	e.mu.Unlock()
	return []Fired{{Ruleset: ruleset, Rule: "after-job", Action: "debug", Args: map[string]any{"msg": "fact"}, MatchingEvents: map[string]any{"m": f}}}, nil
}

type run struct {
	name string
	pv   string
	rv   string
}

// fakeExec records runs; a job for a PV listed in block waits for a release.
type fakeExec struct {
	mu       sync.Mutex
	runs     []run
	block    map[string]chan struct{}
	started  chan run
	results  []JobResult // consumed in order; default successful
	active   atomic.Int64
	maxSeen  atomic.Int64
	sleep    time.Duration
	requests []JobRequest
}

func (x *fakeExec) Run(ctx context.Context, req JobRequest) (JobResult, error) {
	if req.Name == "panic" {
		panic("executor bug")
	}
	ev, _ := req.ExtraVars["ansible_eda"].(map[string]any)["event"].(map[string]any)
	p, _ := ev["payload"].(map[string]any)
	res, _ := p["resource"].(map[string]any)
	md, _ := res["metadata"].(map[string]any)
	r := run{name: req.Name, pv: str(md["name"]), rv: str(md["resourceVersion"])}
	n := x.active.Add(1)
	defer x.active.Add(-1)
	for {
		m := x.maxSeen.Load()
		if n <= m || x.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	x.mu.Lock()
	x.runs = append(x.runs, r)
	x.requests = append(x.requests, req)
	ch := x.block[r.pv]
	out := JobResult{Status: "successful"}
	if len(x.results) > 0 {
		out = x.results[0]
		x.results = x.results[1:]
	}
	x.mu.Unlock()
	if x.started != nil {
		x.started <- r
	}
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return JobResult{Status: "canceled"}, nil
		}
	}
	if x.sleep > 0 {
		time.Sleep(x.sleep)
	}
	out.Started = time.Now()
	out.Finished = out.Started.Add(time.Second)
	return out, nil
}

func (x *fakeExec) Runs() []run {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]run(nil), x.runs...)
}

func pvEvent(id, name, typ string, rv int, nfsPath string) []byte {
	ev := map[string]any{
		"id": id, "type": typ, "kind": "PersistentVolume", "cluster": "primary",
		"resource": map[string]any{
			"kind":     "PersistentVolume",
			"metadata": map[string]any{"name": name, "uid": "uid-" + name, "resourceVersion": fmt.Sprint(rv)},
			"spec":     map[string]any{"nfs": map[string]any{"server": "10.0.0.1", "path": nfsPath}},
		},
	}
	b, _ := json.Marshal(ev)
	return b
}

type harness struct {
	in     *inbox.Inbox
	eng    *fakeEngine
	exec   *fakeExec
	d      *Dispatcher
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

func start(t *testing.T, in *inbox.Inbox, exec *fakeExec, cfg Config) *harness {
	t.Helper()
	h := &harness{in: in, eng: &fakeEngine{}, exec: exec, reg: prometheus.NewRegistry()}
	switch e := cfg.Engine.(type) {
	case *fakeEngine:
		h.eng = e
	case *timedEngine:
		h.eng = &e.fakeEngine
	}
	if _, timed := cfg.Engine.(*timedEngine); !timed {
		cfg.Engine = h.eng
	}
	cfg.Store, cfg.Templates, cfg.Registerer = in, exec, h.reg
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- d.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func openInbox(t *testing.T, dir string) *inbox.Inbox {
	t.Helper()
	in, err := inbox.Open(inbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close() })
	return in
}

func appendRaw(t *testing.T, in *inbox.Inbox, body []byte) uint64 {
	t.Helper()
	r, err := in.Append(context.Background(), &inbox.Item{Payload: body, UUID: fmt.Sprintf("uuid-%d", time.Now().UnixNano()), ReceivedAt: time.Now(), Endpoint: "endpoint"})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r.Seq
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func entry(t *testing.T, in *inbox.Inbox, seq uint64) *inbox.Entry {
	t.Helper()
	e, err := in.Get(seq)
	if err != nil || e == nil {
		t.Fatalf("entry %d: %v", seq, err)
	}
	return e
}

// A burst of 1,000 MODIFIED events for one PV while its sync job runs gives
// exactly one more job, with the newest state, and every entry is finished.
func TestCoalescesBurstIntoNewest(t *testing.T) {
	in := openInbox(t, t.TempDir())
	release := make(chan struct{})
	exec := &fakeExec{block: map[string]chan struct{}{"pv1": release}, started: make(chan run, 10)}
	h := start(t, in, exec, Config{})
	appendRaw(t, in, pvEvent("e0", "pv1", "MODIFIED", 0, "/exports/pv1"))
	first := <-exec.started
	if first.rv != "0" {
		t.Fatalf("first run %+v", first)
	}
	const burst = 1000
	for i := 1; i <= burst; i++ {
		appendRaw(t, in, pvEvent(fmt.Sprintf("e%d", i), "pv1", "MODIFIED", i, "/exports/pv1"))
	}
	// The first of the burst waits behind the running job; the rest merge into it.
	waitFor(t, "the burst to be queued", func() bool { return testutil.ToFloat64(h.d.m.coalesced) == burst-1 })
	exec.mu.Lock()
	exec.block = nil // later runs do not block
	exec.mu.Unlock()
	close(release)
	waitFor(t, "all entries finished", func() bool { return in.Depth() == 0 })
	runs := exec.Runs()
	if len(runs) != 2 || runs[1].rv != fmt.Sprint(burst) {
		t.Fatalf("runs = %+v, want the running one and one with resourceVersion %d", runs, burst)
	}
	e := entry(t, in, 2)
	if e.State != inbox.StateDone || !strings.Contains(e.Reason, "coalesced into the action of event 1001") || len(e.Jobs) != 1 {
		t.Errorf("coalesced entry = %+v", e)
	}
	jobs, _ := in.RecentJobs(10)
	if len(jobs) != 2 || jobs[0].Coalesced != burst-1 || jobs[0].Status != "successful" {
		t.Errorf("jobs = %+v", jobs)
	}
}

// Actions for one resource run in order, one at a time; a sync after a delete
// is not merged into the sync before it; another PV runs in parallel; a
// data-change notice for the same NFS directory joins the PV's lane.
func TestPerResourceOrdering(t *testing.T) {
	in := openInbox(t, t.TempDir())
	release := make(chan struct{})
	exec := &fakeExec{block: map[string]chan struct{}{"a": release}, started: make(chan run, 10)}
	start(t, in, exec, Config{MaxConcurrentJobs: 4})
	appendRaw(t, in, pvEvent("1", "a", "MODIFIED", 1, "/exports/a"))
	if r := <-exec.started; r.pv != "a" {
		t.Fatal(r)
	}
	appendRaw(t, in, pvEvent("2", "a", "DELETED", 2, "/exports/a"))
	appendRaw(t, in, pvEvent("3", "a", "MODIFIED", 3, "/exports/a"))
	// Another PV whose name differs but whose directory is the same shares the lane.
	appendRaw(t, in, pvEvent("4", "a-renamed", "MODIFIED", 4, "/exports//a/"))
	appendRaw(t, in, pvEvent("5", "b", "MODIFIED", 5, "/exports/b"))
	if r := <-exec.started; r.pv != "b" {
		t.Fatalf("PV b did not run while a was busy: %+v", r)
	}
	exec.mu.Lock()
	exec.block = nil
	exec.mu.Unlock()
	close(release)
	waitFor(t, "all done", func() bool { return in.Depth() == 0 })
	var aRuns []string
	for _, r := range exec.Runs() {
		if r.pv != "b" {
			aRuns = append(aRuns, r.name+"@"+r.rv)
		}
	}
	want := []string{"EDA - Sync NFS PV to DR@1", "EDA - Delete NFS PV from DR@2", "EDA - Sync NFS PV to DR@4"}
	if fmt.Sprint(aRuns) != fmt.Sprint(want) {
		t.Fatalf("lane a ran %v, want %v", aRuns, want)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	in := openInbox(t, t.TempDir())
	release := make(chan struct{})
	block := map[string]chan struct{}{}
	for i := range 8 {
		block[fmt.Sprintf("pv%d", i)] = release
	}
	exec := &fakeExec{block: block, started: make(chan run, 8)}
	h := start(t, in, exec, Config{MaxConcurrentJobs: 2})
	for i := range 8 {
		appendRaw(t, in, pvEvent(fmt.Sprint(i), fmt.Sprintf("pv%d", i), "MODIFIED", i, fmt.Sprintf("/e/pv%d", i)))
	}
	<-exec.started
	<-exec.started
	// Every event is evaluated and queued in its lane; only two jobs run.
	waitFor(t, "all events queued in their lanes", func() bool { return h.d.Lanes() == 8 })
	if a := exec.active.Load(); a != 2 {
		t.Fatalf("jobs running = %d, want 2", a)
	}
	close(release)
	waitFor(t, "all done", func() bool { return in.Depth() == 0 })
	if m := exec.maxSeen.Load(); m != 2 {
		t.Fatalf("max concurrent jobs = %d, want 2", m)
	}
	if n := len(exec.Runs()); n != 8 {
		t.Fatalf("runs = %d", n)
	}
}

// An entry whose job is running when the receiver stops stays pending and runs
// after a restart; finished entries do not run again.
func TestPendingAtStopRunsAfterRestart(t *testing.T) {
	dir := t.TempDir()
	in := openInbox(t, dir)
	exec := &fakeExec{block: map[string]chan struct{}{"slow": make(chan struct{})}, started: make(chan run, 10)}
	h := start(t, in, exec, Config{})
	done := appendRaw(t, in, pvEvent("1", "fast", "MODIFIED", 1, "/e/fast"))
	<-exec.started
	waitFor(t, "fast entry done", func() bool { return entry(t, in, done).State == inbox.StateDone })
	slow := appendRaw(t, in, pvEvent("2", "slow", "MODIFIED", 1, "/e/slow"))
	<-exec.started
	if e := entry(t, in, slow); e.State != inbox.StatePending {
		t.Fatalf("entry finished while its job runs: %+v", e)
	}
	h.stop()
	if e := entry(t, in, slow); e.State != inbox.StatePending {
		t.Fatalf("interrupted entry = %+v", e)
	}
	exec2 := &fakeExec{}
	start(t, in, exec2, Config{})
	waitFor(t, "slow entry done after restart", func() bool { return entry(t, in, slow).State == inbox.StateDone })
	if runs := exec2.Runs(); len(runs) != 1 || runs[0].pv != "slow" {
		t.Fatalf("after restart ran %+v", runs)
	}
}

func TestRetriesFailuresAndFacts(t *testing.T) {
	cases := []struct {
		name     string
		extra    map[string]any
		results  []JobResult
		runs     int
		state    string
		reason   string
		jobState string
		facts    int
	}{
		{"retry after failed", map[string]any{"retries": 2, "delay": 0.01}, []JobResult{{Status: "failed"}, {Status: "successful"}}, 2, inbox.StateDone, "", "successful", 0},
		{"no retry on error", map[string]any{"retries": 2}, []JobResult{{Status: "error", Message: "could not run"}}, 1, inbox.StateFailed, "error: could not run", "error", 0},
		{"retries exhausted", map[string]any{"retry": true}, []JobResult{{Status: "failed"}, {Status: "failed"}}, 2, inbox.StateFailed, "failed", "failed", 0},
		{"set_facts from artifacts", map[string]any{"set_facts": true}, []JobResult{{Status: "successful", Artifacts: map[string]any{"synced": true}}}, 1, inbox.StateDone, "", "successful", 1},
		{"post_events from artifacts", map[string]any{"post_events": true}, []JobResult{{Status: "successful", Artifacts: map[string]any{"synced": true}}}, 1, inbox.StateDone, "", "successful", -1},
		{"empty artifacts post nothing", map[string]any{"set_facts": true}, []JobResult{{Status: "successful"}}, 1, inbox.StateDone, "", "successful", 0},
		{"executor panic", map[string]any{"name": "panic"}, nil, 0, inbox.StateFailed, "internal error running run_job_template: executor bug", "error", 0},
		{"missing organization", map[string]any{"organization": ""}, nil, 0, inbox.StateFailed, "organization is required", "error", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := openInbox(t, t.TempDir())
			exec := &fakeExec{results: c.results}
			eng := &fakeEngine{extra: c.extra}
			start(t, in, exec, Config{Engine: eng})
			seq := appendRaw(t, in, pvEvent("1", "pv", "MODIFIED", 1, "/e/pv"))
			waitFor(t, "entry finished", func() bool { return entry(t, in, seq).State != inbox.StatePending })
			e := entry(t, in, seq)
			if len(exec.Runs()) != c.runs || e.State != c.state || !strings.Contains(e.Reason, c.reason) {
				t.Fatalf("runs %d, entry %+v", len(exec.Runs()), e)
			}
			jobs, _ := in.RecentJobs(5)
			if len(jobs) != 1 || jobs[0].Status != c.jobState {
				t.Fatalf("jobs %+v", jobs)
			}
			if c.runs > 0 && jobs[0].Attempts != c.runs {
				t.Errorf("attempts %d", jobs[0].Attempts)
			}
			if c.facts == -1 { // posted as an event, not a fact
				if len(eng.posted) != 1 || len(eng.facts) != 0 || eng.posted[0]["synced"] != true {
					t.Fatalf("posted %v facts %v", eng.posted, eng.facts)
				}
				return
			}
			if len(eng.facts) != c.facts || len(eng.posted) != 0 {
				t.Fatalf("facts %v posted %v", eng.facts, eng.posted)
			}
			if c.facts > 0 {
				src := eng.facts[0]["meta"].(map[string]any)["source"].(map[string]any)
				if eng.facts[0]["synced"] != true || src["name"] != "run_job_template" || src["type"] != "internal" {
					t.Errorf("fact %v", eng.facts[0])
				}
				if !strings.Contains(strings.Join(e.Rules, ","), "rs/after-job") {
					t.Errorf("rule fired by the fact not recorded: %v", e.Rules)
				}
			}
		})
	}
}

func TestNoMatchAndEngineErrorsAreRecorded(t *testing.T) {
	in := openInbox(t, t.TempDir())
	exec := &fakeExec{}
	start(t, in, exec, Config{})
	noise := appendRaw(t, in, []byte(`{"kind":"Noise"}`))
	broken := appendRaw(t, in, []byte(`{"kind":"Broken"}`))
	panicked := appendRaw(t, in, []byte(`{"kind":"Panic"}`))
	after := appendRaw(t, in, []byte(`{"kind":"Noise"}`))
	waitFor(t, "all finished", func() bool { return in.Depth() == 0 })
	if e := entry(t, in, panicked); e.State != inbox.StateFailed || !strings.Contains(e.Reason, "rule engine panic: engine bug") {
		t.Errorf("panicked %+v", e)
	}
	if e := entry(t, in, after); e.State != inbox.StateDone {
		t.Errorf("event after the panic %+v", e)
	}
	if e := entry(t, in, noise); e.State != inbox.StateDone || e.Reason != "no rule matched" {
		t.Errorf("noise %+v", e)
	}
	if e := entry(t, in, broken); e.State != inbox.StateFailed || !strings.Contains(e.Reason, "cannot evaluate") {
		t.Errorf("broken %+v", e)
	}
	if len(exec.Runs()) != 0 {
		t.Error("jobs ran")
	}
}

func TestShutdownActionAfterItsEntryIsDone(t *testing.T) {
	in := openInbox(t, t.TempDir())
	got := make(chan string, 1)
	eng := &shutdownEngine{}
	d, err := New(Config{Engine: eng, Store: in, Shutdown: func(r string) {
		e, _ := in.Get(1)
		got <- r + " " + e.State
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = d.Run(ctx) }()
	appendRaw(t, in, []byte(`{}`))
	select {
	case r := <-got:
		if r != "bye done" {
			t.Fatalf("shutdown %q", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown")
	}
}

type shutdownEngine struct{}

func (shutdownEngine) Process(ev map[string]any) ([]Fired, error) {
	return []Fired{{Ruleset: "rs", Rule: "stop", Action: "shutdown", Args: map[string]any{"message": "bye"}, MatchingEvents: map[string]any{"m": ev}}}, nil
}
func (shutdownEngine) PostEvent(string, map[string]any) ([]Fired, error) { return nil, nil }
func (shutdownEngine) SetFact(string, map[string]any) ([]Fired, error)   { return nil, nil }

func TestBuildRequest(t *testing.T) {
	ev := map[string]any{"payload": map[string]any{"a": 1}, "meta": map[string]any{"hosts": []any{"h1", "h2"}}}
	cases := []struct {
		name   string
		f      Fired
		limit  string
		vars   string
		labels []string
		uuid   string
	}{
		{"ansible_eda added after user vars, meta.hosts as limit",
			Fired{Ruleset: "rs", Rule: "r", Action: "run_job_template", Args: map[string]any{"name": "T", "organization": "O", "job_args": map[string]any{"extra_vars": map[string]any{"x": 1}}}, MatchingEvents: map[string]any{"m": ev}},
			"h1,h2", `{"ansible_eda":{"event":{"meta":{"hosts":["h1","h2"]},"payload":{"a":1}},"rule":"r","ruleset":"rs"},"x":1}`, nil, "U"},
		{"include_events false, limit list wins",
			Fired{Ruleset: "rs", Rule: "r", Action: "run_workflow_template", Args: map[string]any{"name": "T", "organization": "O", "include_events": false, "job_args": map[string]any{"limit": []any{"a", "b"}}, "labels": []any{"l1"}, "add_event_uuid_label": false}, MatchingEvents: map[string]any{"m": ev}},
			"a,b", `{}`, []string{"l1"}, ""},
		{"several matches give events",
			Fired{Ruleset: "rs", Rule: "r", Action: "run_playbook", Args: map[string]any{"name": "p.yml", "extra_vars": map[string]any{"y": "z"}}, MatchingEvents: map[string]any{"m_0": map[string]any{"i": 0}, "m_1": map[string]any{"i": 1}}},
			"", `{"ansible_eda":{"events":{"m_0":{"i":0},"m_1":{"i":1}},"rule":"r","ruleset":"rs"},"y":"z"}`, nil, "U"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _, err := buildRequest(c.f, "U")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(req.ExtraVars)
			if req.Limit != c.limit || string(b) != c.vars || fmt.Sprint(req.Labels) != fmt.Sprint(c.labels) || req.EventUUID != c.uuid {
				t.Fatalf("got limit %q vars %s labels %v uuid %q", req.Limit, b, req.Labels, req.EventUUID)
			}
		})
	}
}

func TestLaneKey(t *testing.T) {
	pv := func(spec map[string]any) map[string]any {
		return map[string]any{"payload": map[string]any{"kind": "PersistentVolume", "cluster": "c", "resource": map[string]any{
			"kind": "PersistentVolume", "metadata": map[string]any{"name": "pv1"}, "spec": spec}}}
	}
	cases := []struct {
		name string
		ev   map[string]any
		want string
	}{
		{"nfs PV", pv(map[string]any{"nfs": map[string]any{"server": "NFS.example", "path": "/exports/a/"}}), "nfs:nfs.example:/exports/a"},
		{"csi-driver-nfs PV with subdir", pv(map[string]any{"csi": map[string]any{"driver": "nfs.csi.k8s.io", "volumeAttributes": map[string]any{"server": "10.0.0.1", "share": "/exports", "subdir": "a"}}}), "nfs:10.0.0.1:/exports/a"},
		{"PV without NFS", pv(map[string]any{"hostPath": map[string]any{"path": "/x"}}), "c/PersistentVolume//pv1"},
		{"data-change notice", map[string]any{"payload": map[string]any{"nfs": map[string]any{"server": "10.0.0.1", "path": "/exports/a"}}}, "nfs:10.0.0.1:/exports/a"},
		{"NFSDirectory event", map[string]any{"payload": map[string]any{"kind": "NFSDirectory", "resource": map[string]any{"server": "10.0.0.1", "exportRoot": "/exports", "path": "/exports/a"}}}, "nfs:10.0.0.1:/exports/a"},
		{"VolumeSnapshot", map[string]any{"payload": map[string]any{"cluster": "c", "resource": map[string]any{"kind": "VolumeSnapshot", "metadata": map[string]any{"name": "s", "namespace": "ns"}}}}, "c/VolumeSnapshot/ns/s"},
		{"bare object (a fact)", map[string]any{"kind": "VirtualMachine", "metadata": map[string]any{"name": "vm", "namespace": "ns"}}, "/VirtualMachine/ns/vm"},
		{"no object", map[string]any{"payload": map[string]any{"x": 1}}, ""},
	}
	for _, c := range cases {
		if got := LaneKey(c.ev); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// Each successful job records the replication lag: from the earliest change
// it carried (coalesced events included; an NFSDirectory's firstChangeAt
// before its observedAt) to the job's end, in /api/v1/jobs and the histogram.
func TestReplicationLag(t *testing.T) {
	in := openInbox(t, t.TempDir())
	release := make(chan struct{})
	exec := &fakeExec{block: map[string]chan struct{}{"pv1": release}, started: make(chan run, 10)}
	h := start(t, in, exec, Config{})
	now := time.Now().UTC()
	ago := func(s int) string { return now.Add(-time.Duration(s) * time.Second).Format(time.RFC3339Nano) }
	event := func(id, kind string, rv int, observed string, res map[string]any) []byte {
		res["metadata"] = map[string]any{"name": "pv1", "uid": "uid-pv1", "resourceVersion": fmt.Sprint(rv)}
		res["kind"] = kind
		res["server"], res["path"] = "10.0.0.1", "/exports/pv1"
		b, _ := json.Marshal(map[string]any{"id": id, "type": "MODIFIED", "kind": kind, "cluster": "primary", "observedAt": observed, "resource": res})
		return b
	}
	appendRaw(t, in, event("a", "PersistentVolume", 1, ago(50), map[string]any{"spec": map[string]any{"nfs": map[string]any{"server": "10.0.0.1", "path": "/exports/pv1"}}}))
	<-exec.started
	// Two changes wait behind the running job and merge: the lag counts from the older.
	appendRaw(t, in, event("b", "PersistentVolume", 2, ago(40), map[string]any{"spec": map[string]any{"nfs": map[string]any{"server": "10.0.0.1", "path": "/exports/pv1"}}}))
	appendRaw(t, in, event("c", "PersistentVolume", 3, ago(10), map[string]any{"spec": map[string]any{"nfs": map[string]any{"server": "10.0.0.1", "path": "/exports/pv1"}}}))
	waitFor(t, "b and c to merge", func() bool { return testutil.ToFloat64(h.d.m.coalesced) == 1 })
	exec.mu.Lock()
	exec.block = nil
	exec.mu.Unlock()
	close(release)
	waitFor(t, "entries finished", func() bool { return in.Depth() == 0 })
	// A data write: the VM wrote 20 s ago, the watcher reported it 5 s ago.
	appendRaw(t, in, event("d", "NFSDirectory", 4, ago(5), map[string]any{"firstChangeAt": ago(20)}))
	waitFor(t, "the data-write job", func() bool { return in.Depth() == 0 && len(exec.Runs()) == 3 })

	jobs, _ := in.RecentJobs(10)
	if len(jobs) != 3 {
		t.Fatalf("jobs = %+v", jobs)
	}
	want := map[uint64]float64{jobs[2].ID: 50, jobs[1].ID: 40, jobs[0].ID: 20} // newest first
	for _, j := range jobs {
		w := want[j.ID]
		// The fake job ends one second after it starts, a little after now.
		if j.ReplicationLagSeconds < w || j.ReplicationLagSeconds > w+15 || j.FirstChange == nil {
			t.Errorf("job %d: lag %.1fs first change %v, want about %.0fs", j.ID, j.ReplicationLagSeconds, j.FirstChange, w+1)
		}
	}
	if n := testutil.CollectAndCount(h.d.m.lag); n != 2 {
		t.Errorf("lag histogram has %d series, want PersistentVolume and NFSDirectory", n)
	}
}

// timedEngine fires one job from a time window when armed.
type timedEngine struct {
	fakeEngine
	armed atomic.Bool
}

func (e *timedEngine) Advance(time.Time) ([]Fired, error) {
	if !e.armed.CompareAndSwap(true, false) {
		return nil, nil
	}
	ev := map[string]any{"payload": map[string]any{"kind": "PersistentVolume", "resource": map[string]any{
		"metadata": map[string]any{"name": "pv-window", "resourceVersion": "7"}}}}
	return []Fired{{Ruleset: "rs", Rule: "window", Action: "run_job_template",
		Args: map[string]any{"name": "EDA - Sync NFS PV to DR", "organization": "Default"}, MatchingEvents: map[string]any{"m": ev}}}, nil
}

// A time window that ends with no event arriving (not_all timeout,
// once_after) still runs its action: the dispatcher advances a Timed engine
// on its tick and records the job.
func TestTimeWindowActionsRunWithoutEvents(t *testing.T) {
	in := openInbox(t, t.TempDir())
	exec := &fakeExec{}
	eng := &timedEngine{}
	start(t, in, exec, Config{Engine: eng, TickInterval: 20 * time.Millisecond})
	eng.armed.Store(true)
	waitFor(t, "the window's job", func() bool { return len(exec.Runs()) == 1 })
	if r := exec.Runs()[0]; r.pv != "pv-window" {
		t.Fatalf("run %+v", r)
	}
	waitFor(t, "the job record", func() bool {
		jobs, _ := in.RecentJobs(10)
		return len(jobs) == 1 && jobs[0].Rule == "window" && jobs[0].Status == "successful"
	})
	if in.Depth() != 0 {
		t.Errorf("a time-window action left %d entries pending", in.Depth())
	}
}
