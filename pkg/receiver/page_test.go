// Who sees the status page: the operator token (Bearer or the login form's
// cookie) does; no token, a wrong one or the webhook token get the login
// form and none of the state.
package receiver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestStatusPageAuth(t *testing.T) {
	cfg := volumeConfig(t)
	r := serve(t, cfg, syncEngine{})
	base := "http://" + r.addr
	cases := []struct {
		name, token string
		table       bool
	}{
		{"operator token", testOperator, true},
		{"no token", "", false},
		{"webhook token", testToken, false},
		{"wrong token", "x" + testOperator, false},
	}
	for _, c := range cases {
		code, body := do(t, http.DefaultClient, "GET", base+"/", c.token, "")
		if code != 200 || strings.Contains(body, `id="volume-table"`) != c.table || strings.Contains(body, `id="token"`) == c.table {
			t.Errorf("%s: %d, table shown %v, want %v", c.name, code, strings.Contains(body, `id="volume-table"`), c.table)
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for tok, want := range map[string]int{testToken: 403, "wrong": 401} {
		resp, err := noRedirect.PostForm(base+"/api/v1/login", url.Values{"token": {tok}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || len(resp.Cookies()) != 0 {
			t.Errorf("login with %q: %d, cookies %v", tok, resp.StatusCode, resp.Cookies())
		}
	}
	resp, err := noRedirect.PostForm(base+"/api/v1/login", url.Values{"token": {testOperator}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cs) != 1 || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || cs[0].Value == testOperator {
		t.Fatalf("login: %d %+v", resp.StatusCode, cs)
	}
	for _, path := range []string{"/", "/api/v1/volumes"} {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.AddCookie(cs[0])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("GET %s with the session cookie: %d", path, res.StatusCode)
		}
	}
}
