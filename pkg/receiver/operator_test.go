package receiver

import (
	"net/http"
	"strings"
	"testing"
)

// The operator token reads /api/v1 and the webhook token does not; neither
// can do the other's job. Without an operator token the webhook token still
// reads the API (issue 15.11).
func TestOperatorTokenSeparatesReadingFromPosting(t *testing.T) {
	operator := "operator-token-" + strings.Repeat("o", 32)
	cases := []struct {
		name, operatorToken, method, path, token string
		want                                     int
	}{
		{"operator reads events", operator, "GET", "/api/v1/events", operator, 200},
		{"operator reads jobs", operator, "GET", "/api/v1/jobs", operator, 200},
		{"webhook token cannot read", operator, "GET", "/api/v1/events", testToken, 403},
		{"no token cannot read", operator, "GET", "/api/v1/jobs", "", 401},
		{"wrong token cannot read", operator, "GET", "/api/v1/jobs", "x" + operator, 401},
		{"operator token cannot post events", operator, "POST", "/endpoint", operator, 401},
		{"webhook token posts events", operator, "POST", "/endpoint", testToken, 200},
		{"without an operator token the webhook token reads", "", "GET", "/api/v1/events", testToken, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := baseConfig(t)
			cfg.OperatorToken = c.operatorToken
			r := serve(t, cfg, recordEngine{})
			code, body := do(t, &http.Client{}, c.method, "http://"+r.addr+c.path, c.token, `{"kind":"x"}`)
			if code != c.want {
				t.Errorf("%s %s: %d %q, want %d", c.method, c.path, code, body, c.want)
			}
		})
	}
}

func TestOperatorTokenValidated(t *testing.T) {
	cfg := baseConfig(t)
	for _, tok := range []string{"short", cfg.WebhookToken} {
		cfg.OperatorToken = tok
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "operator token") {
			t.Errorf("operator token %q accepted: %v", tok, err)
		}
	}
}
