// server_test.go pins the fake's HTTP surface both contracts rely on: the
// routes answer under the prefixes they are registered for, anything else is
// the Controller's JSON 404, and the configuration store masks secrets and
// keeps them when an update sends $encrypted$ back.
package aaptest

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func call(t *testing.T, s *Server, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestRoutes(t *testing.T) {
	launch := New("tok")
	defer launch.Close()
	jt := launch.AddTemplate(Template{Name: "T"})
	store := NewConfigStore("tok")
	defer store.Close()
	for _, tc := range []struct {
		name         string
		srv          *Server
		method, path string
		want         int
		detail       string
	}{
		{name: "template under the controller prefix", srv: launch, method: "GET", path: "/api/v2/job_templates/?name=T", want: 200},
		{name: "template under the gateway prefix", srv: launch, method: "GET", path: "/api/controller/v2/job_templates/?name=T", want: 200},
		{name: "launch info", srv: launch, method: "GET", path: "/api/v2/job_templates/" + itoa(jt.ID) + "/launch/", want: 200},
		{name: "unknown template", srv: launch, method: "GET", path: "/api/v2/job_templates/9999/launch/", want: 404, detail: "Not found."},
		{name: "wrong method is the JSON 404", srv: launch, method: "DELETE", path: "/api/v2/jobs/", want: 404, detail: "Not found."},
		{name: "no trailing sub-path match", srv: launch, method: "GET", path: "/api/v2/job_templates/" + itoa(jt.ID) + "/launch/extra/", want: 404, detail: "Not found."},
		{name: "outside the API", srv: launch, method: "GET", path: "/other/", want: 404, detail: "Not found."},
		{name: "ping needs no token", srv: launch, method: "GET", path: "/api/v2/ping/", want: 200},
		{name: "store list", srv: store, method: "GET", path: "/api/v2/organizations/?name=Default", want: 200},
		{name: "store only under /api/v2/", srv: store, method: "GET", path: "/api/controller/v2/organizations/", want: 404, detail: "Not found."},
		{name: "store object", srv: store, method: "GET", path: "/api/v2/organizations/1/", want: 200},
		{name: "store PUT not allowed", srv: store, method: "PUT", path: "/api/v2/organizations/1/", want: 405, detail: "Method not allowed."},
		{name: "store unknown relation", srv: store, method: "GET", path: "/api/v2/organizations/1/nonsense/", want: 404, detail: "Not found."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, tc.srv, tc.method, tc.path, "")
			if code != tc.want || (tc.detail != "" && body["detail"] != tc.detail) {
				t.Errorf("%s %s: %d %v, want %d detail %q", tc.method, tc.path, code, body, tc.want, tc.detail)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestStoreMasksAndKeepsSecrets(t *testing.T) {
	s := NewConfigStore("tok")
	defer s.Close()
	machine := s.Find("credential_types", Object{"name": "Machine"})[0]["id"]
	code, created := call(t, s, "POST", "/api/v2/credentials/",
		`{"name":"c","credential_type":`+itoa(int64(machine.(int)))+`,"inputs":{"username":"root","password":"hunter2"}}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	in := created["inputs"].(map[string]any)
	if in["password"] != "$encrypted$" || in["username"] != "root" {
		t.Errorf("created inputs %v: want the password masked, the username shown", in)
	}
	path := "/api/v2/credentials/" + itoa(int64(created["id"].(float64))) + "/"
	if code, _ := call(t, s, "PATCH", path, `{"inputs":{"username":"admin","password":"$encrypted$"}}`); code != 200 {
		t.Fatalf("patch: %d", code)
	}
	stored := s.Find("credentials", Object{"name": "c"})[0]["inputs"].(map[string]any)
	if stored["password"] != "hunter2" || stored["username"] != "admin" {
		t.Errorf("after a PATCH sending $encrypted$ back: stored %v, want the old password kept", stored)
	}
	if w := s.Writes(); len(w) != 2 || w[0] != "POST /api/v2/credentials/" || !strings.HasPrefix(w[1], "PATCH ") {
		t.Errorf("writes %v", w)
	}
}
