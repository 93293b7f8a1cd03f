package virtapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
)

type guestMap map[string][]*guest.Writer

func (g guestMap) Writers(ns, name string) []*guest.Writer { return g[ns+"/"+name] }

func vm(name, status string, annotations map[string]any) *unstructured.Unstructured {
	md := map[string]any{"name": name, "namespace": "ns"}
	if annotations != nil {
		md["annotations"] = annotations
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": md,
		"spec": map[string]any{}, "status": map[string]any{"printableStatus": status},
	}}
}

type fixture struct {
	t   *testing.T
	srv *Server
	hc  *http.Client
	w   *guest.Writer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	log := zaptest.NewLogger(t)
	w, err := guest.Start(guest.Options{Path: filepath.Join(t.TempDir(), "disk.img"), Size: 1 << 20, Records: 32, Interval: 20 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	dc := dynfake.NewSimpleDynamicClient(runtime.NewScheme(),
		vm("vm1", "Running", nil),
		vm("stopped", "Stopped", nil),
		vm("noagent", "Running", map[string]any{AnnotationGuestAgent: "false"}))
	srv, err := Start(Options{VMs: dc, Guests: guestMap{"ns/vm1": {w}}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return &fixture{t: t, srv: srv, hc: hc, w: w}
}

func (f *fixture) do(method, path, body string) (int, []byte) {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, f.srv.URL()+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("X-Remote-User", "tester")
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

const vmiPath = "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachineinstances/"

func TestRequests(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     string // substring of the answer
	}{
		{"group list", "GET", "/apis", "", 200, `"name":"subresources.kubevirt.io"`},
		{"group", "GET", "/apis/subresources.kubevirt.io", "", 200, `"preferredVersion":{"groupVersion":"subresources.kubevirt.io/v1"`},
		{"resources", "GET", "/apis/subresources.kubevirt.io/v1", "", 200, `{"name":"virtualmachineinstances/freeze","singularName":"","namespaced":true,"kind":"VirtualMachineInstance","verbs":["update"]}`},
		{"healthz", "GET", "/healthz", "", 200, "ok"},
		{"openapi v2", "GET", "/openapi/v2", "", 200, `"swagger":"2.0"`},
		{"unknown path", "GET", "/apis/other", "", 404, `"kind":"Status"`},
		{"freeze without body", "PUT", vmiPath + "vm1/freeze", "", 400, "unfreeze timeout is required"},
		{"freeze without timeout", "PUT", vmiPath + "vm1/freeze", "{}", 400, "Unfreeze timeout is required"},
		{"freeze with a bad timeout", "PUT", vmiPath + "vm1/freeze", `{"unfreezeTimeout":"soon"}`, 400, "soon"},
		{"freeze of a missing VMI", "PUT", vmiPath + "nope/freeze", `{"unfreezeTimeout":"30s"}`, 404, `virtualmachineinstance.kubevirt.io \"nope\" not found`},
		{"freeze of a stopped VMI", "PUT", vmiPath + "stopped/freeze", `{"unfreezeTimeout":"30s"}`, 409, "VMI is not running"},
		{"freeze without guest agent", "PUT", vmiPath + "noagent/freeze", `{"unfreezeTimeout":"30s"}`, 409, "VMI does not have guest agent connected"},
		{"unfreeze without guest agent", "PUT", vmiPath + "noagent/unfreeze", "", 409, "VMI does not have guest agent connected"},
		{"freeze", "PUT", vmiPath + "vm1/freeze", `{"unfreezeTimeout":"30s"}`, 200, ""},
		{"freeze again", "PUT", vmiPath + "vm1/freeze", `{"unfreezeTimeout":"30s"}`, 200, ""},
		{"unfreeze", "PUT", vmiPath + "vm1/unfreeze", "", 200, ""},
		{"unfreeze again", "PUT", vmiPath + "vm1/unfreeze", "", 200, ""},
		{"freeze with POST", "POST", vmiPath + "vm1/freeze", `{"unfreezeTimeout":"30s"}`, 405, `"reason":"MethodNotAllowed"`},
		{"unknown subresource", "PUT", vmiPath + "vm1/pause", "", 404, `"reason":"NotFound"`},
		{"freeze log", "GET", "/debug/freezes", "", 200, `"name":"vm1","requests":2,"freezes":1,"unfreezes":2,"thaws":1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.do(tc.method, tc.path, tc.body)
			if code != tc.code || !bytes.Contains(body, []byte(tc.want)) {
				t.Fatalf("%s %s = %d %s; want %d with %q", tc.method, tc.path, code, body, tc.code, tc.want)
			}
		})
	}
	l := f.srv.FreezeLog("ns", "noagent")
	if l.Refused != 2 || l.Freezes != 0 || len(l.Events) != 2 || l.Events[0].Code != 409 || l.Events[0].User != "tester" {
		t.Fatalf("freeze log of noagent: %+v", l)
	}
}

func TestFreezeStopsTheGuest(t *testing.T) {
	f := newFixture(t)
	if code, body := f.do("PUT", vmiPath+"vm1/freeze", `{"unfreezeTimeout":"1m"}`); code != 200 {
		t.Fatalf("freeze: %d %s", code, body)
	}
	st := f.w.Status()
	if !st.Frozen {
		t.Fatalf("writer not frozen after the freeze answered: %+v", st)
	}
	if res, err := guest.Check(f.w.Path()); err != nil || res.Level != guest.ApplicationConsistent {
		t.Fatalf("Check of a frozen disk = %v, %v", res, err)
	}
	l := f.srv.FreezeLog("ns", "vm1")
	if !l.Frozen || l.UnfreezeTimeout.Duration != time.Minute || len(l.Disks) != 1 || l.Disks[0] != f.w.Path() {
		t.Fatalf("freeze log %+v", l)
	}
	if code, body := f.do("PUT", vmiPath+"vm1/unfreeze", ""); code != 200 {
		t.Fatalf("unfreeze: %d %s", code, body)
	}
	if f.w.Status().Frozen {
		t.Fatal("writer still frozen after unfreeze")
	}
	if l := f.srv.FreezeLog("ns", "vm1"); l.Frozen || len(l.Durations) != 1 {
		t.Fatalf("freeze log %+v", l)
	}
}

func TestUnfreezeWatchdog(t *testing.T) {
	f := newFixture(t)
	if code, body := f.do("PUT", vmiPath+"vm1/freeze", `{"unfreezeTimeout":"200ms"}`); code != 200 {
		t.Fatalf("freeze: %d %s", code, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.w.Status().Frozen {
		if time.Now().After(deadline) {
			t.Fatal("the watchdog did not thaw the guest")
		}
		time.Sleep(20 * time.Millisecond)
	}
	l := f.srv.FreezeLog("ns", "vm1")
	if l.AutoThaws != 1 || l.Thaws != 0 || l.Frozen || len(l.Durations) != 1 || l.Durations[0].Duration < 200*time.Millisecond {
		t.Fatalf("freeze log %+v", l)
	}
	var all []VMFreezes
	_, body := f.do("GET", "/debug/freezes", "")
	if err := json.Unmarshal(body, &all); err != nil || len(all) != 1 || all[0].Events[len(all[0].Events)-1].Kind != "auto-thaw" {
		t.Fatalf("/debug/freezes = %s (%v)", body, err)
	}
}

func TestAPIServiceObject(t *testing.T) {
	o := apiServiceObject(8443)
	spec, _, _ := unstructured.NestedMap(o.Object, "spec")
	svc, _, _ := unstructured.NestedMap(spec, "service")
	if o.GetName() != "v1.subresources.kubevirt.io" || svc["port"] != int64(8443) || spec["insecureSkipTLSVerify"] != true {
		t.Fatalf("APIService %v", o.Object)
	}
}
