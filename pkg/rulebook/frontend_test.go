// Tests of the expression front end shared by conditions, templates and
// var_root: one path grammar, integers of any size, Python re semantics.

package rulebook

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// big65 is a 65-digit integer, beyond int64 and float64's exact range.
const big65 = "12345678901234567890123456789012345678901234567890123456789012345"

// oneRule is a rulebook with one rule whose condition is cond and whose
// print_event action has the given extra argument lines.
func oneRule(cond, args string) string {
	return "- name: rs\n  hosts: all\n  sources:\n    - generic: {}\n  rules:\n" +
		"    - name: r\n      condition: '" + strings.ReplaceAll(cond, "'", "''") + "'\n" +
		"      action:\n        print_event:\n" + args
}

// fire loads src, processes ev and returns what fired.
func fire(t *testing.T, src string, ev map[string]any) []Fired {
	t.Helper()
	rb, err := Load([]byte(src), "frontend.yml", nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	got, err := NewSession(rb, Options{}).ProcessDirect("rs", ev)
	if err != nil {
		t.Fatalf("process: %v", err)
	}
	return got
}

// A template reads paths with the same grammar as a condition: negative
// indexes, quoted keys holding brackets, and expressions (+, comparisons)
// around them.
func TestTemplatePathGrammar(t *testing.T) {
	ctx := map[string]any{"event": map[string]any{
		"l": []any{int64(1), int64(2), int64(3)},
		"m": map[string]any{"a]b": "odd", "k": "v"},
	}}
	tests := []struct {
		in   string
		want any
	}{
		{"{{ event.l[-1] }}", int64(3)},
		{"{{ event.l[-1] + 1 }}", int64(4)},
		{"{{ event['l'][-2] - event.l[0] }}", int64(1)},
		{`{{ event.m["a]b"] }}`, "odd"},
		{"{{ event.m.k == 'v' }}", true},
		{"last={{ event.l[-1] }}", "last=3"},
		{"{{ (event.m.k ~ 1) | default('d') }}", nil}, // a syntax error: see below
	}
	for _, tt := range tests[:len(tests)-1] {
		got, err := renderString(tt.in, ctx)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s = %v (%T), want %v", tt.in, got, got, tt.want)
		}
	}
	if _, err := renderString(tests[len(tests)-1].in, ctx); err == nil {
		t.Errorf("%s rendered without a syntax error", tests[len(tests)-1].in)
	}
}

// var_root takes the same path grammar: payload.items[-1] is the last item.
func TestVarRootPath(t *testing.T) {
	src := oneRule("event.payload.kind == \"k\"", "          var_root: payload.items[-1]\n")
	ev := map[string]any{"payload": map[string]any{"kind": "k", "items": []any{
		map[string]any{"n": int64(1)}, map[string]any{"n": int64(2)},
	}}}
	got := fire(t, src, ev)
	if len(got) != 1 {
		t.Fatalf("fired %d actions, want 1", len(got))
	}
	m, _ := got[0].Matched().(map[string]any)
	if m == nil || m["n"] != int64(2) {
		t.Errorf("var_root payload.items[-1] gave %v, want the last item {n: 2}", got[0].Matched())
	}
}

// A 65-digit literal loads, and compares exactly with integers of any
// size and with floats (as Python does).
func TestBigIntegers(t *testing.T) {
	bigJSON := json.RawMessage(`{"n": ` + big65 + `, "f": 1e64, "i": 9007199254740992}`)
	ev := WrapWebhookEvent(bigJSON, "/e", nil, nowForBench, "u")
	tests := []struct {
		cond string
		want bool
	}{
		{"event.payload.n == " + big65, true},
		{"event.payload.n != " + big65, false},
		{"event.payload.n == " + big65 + "0", false},
		{"event.payload.n > 1", true},
		{"event.payload.n < -" + big65, false},
		{"event.payload.f < " + big65, true},                      // 1e64 < 1.23...e64
		{"event.payload.f == 1" + strings.Repeat("0", 64), false}, // float 1e64 is not exactly 10**64
		{"event.payload.i == 9007199254740993", false},            // int64 exact beyond 2**53
		{"event.payload.i + 1 == 9007199254740993", true},
		{"event.payload.n + 1 == " + big65[:64] + "6", true},
	}
	for _, tt := range tests {
		got := len(fire(t, oneRule(tt.cond, ""), ev)) == 1
		if got != tt.want {
			t.Errorf("%s: fired %v, want %v", tt.cond, got, tt.want)
		}
	}
	v, err := renderString("{{ event.payload.n }}", map[string]any{"event": ev})
	if err != nil || fmt.Sprint(v) != big65 {
		t.Errorf("template of a big integer = %v, %v; want %s", v, err, big65)
	}
}

// match, search and regex follow Python's re: $ also matches before a
// final newline, \Z is the very end, match anchors at the start.
func TestRegexPythonSemantics(t *testing.T) {
	tests := []struct {
		text, cond string
		want       bool
	}{
		{"all done\n", `event.t is search("done$")`, true},
		{"all done\n", `event.t is regex("^all done$")`, true},
		{"all done\n", `event.t is match("all done$")`, true},
		{"all done\n\n", `event.t is search("done$")`, false},
		{"all done\n", `event.t is search("done\Z")`, false},
		{"all done", `event.t is search("done\Z")`, true},
		{"a\nb\n", `event.t is search("a$", multiline=true)`, true},
		{"a\nb\n", `event.t is search("a$")`, false},
		{"xab", `event.t is match("ab")`, false},
		{"xab", `event.t is search("ab")`, true},
		{"price: $5", `event.t is search("[$]5")`, true},
		{"done\n", `event.t is not search("done$")`, false},
	}
	for _, tt := range tests {
		got := len(fire(t, oneRule(tt.cond, ""), map[string]any{"t": tt.text})) == 1
		if got != tt.want {
			t.Errorf("%q %s: fired %v, want %v", tt.text, tt.cond, got, tt.want)
		}
	}
}

// What RE2 cannot run is refused when the rulebook loads, saying what.
func TestRegexRefusedAtLoad(t *testing.T) {
	tests := []struct{ cond, want string }{
		{`event.t is search("(a)\1")`, "backreference"},
		{`event.t is match("foo(?=bar)")`, "lookahead"},
		{`event.t is regex("(?<!x)y")`, "lookbehind"},
		{`event.t is search("(?P<q>a)(?P=q)")`, "named backreference"},
		{`event.l is select("regex", "(?!a)")`, "lookahead"},
	}
	for _, tt := range tests {
		_, err := Load([]byte(oneRule(tt.cond, "")), "re.yml", nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "RE2") {
			t.Errorf("%s: load error %v, want one naming %q and RE2", tt.cond, err, tt.want)
		}
	}
}

// A template that does not parse fails the load, naming the rule and what
// is wrong, instead of failing later when the rule fires.
func TestTemplateErrorsAtLoad(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"{{ event.x | no_such_filter }}", `unknown filter "no_such_filter"`},
		{"x {{ event.x.no_such_method() }}", `unknown method "no_such_method"`},
		{"{{ event.x[ }}", "bad index"},
		{"{{ }}", "empty expression"},
	}
	for _, tt := range tests {
		src := oneRule("event.i == 1", "          var_root: \""+strings.ReplaceAll(tt.msg, `"`, `\"`)+"\"\n")
		_, err := Load([]byte(src), "tmpl.yml", nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `rule "r"`) {
			t.Errorf("%s: load error %v, want one naming rule r and %q", tt.msg, err, tt.want)
		}
	}
}

// Integers beyond int64 written in YAML (action arguments, vars files)
// stay exact instead of becoming floats.
func TestBigIntegersFromYAML(t *testing.T) {
	path := t.TempDir() + "/vars.yml"
	if err := os.WriteFile(path, []byte("limit: "+big65+"\nsmall: 7\nratio: 1.5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars, err := LoadVarsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := oneRule("event.n == vars.limit", "          var_root: \"{{ limit }}-{{ small }}-{{ ratio }}\"\n")
	rb, err := Load([]byte(src), "big.yml", vars)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewSession(rb, Options{}).ProcessDirect("rs", map[string]any{"n": vars["limit"]})
	if err != nil || len(got) != 1 {
		t.Fatalf("fired %d, %v; want 1", len(got), err)
	}
	if s := fmt.Sprint(got[0].Args["var_root"]); s != big65+"-7-1.5" {
		t.Errorf("rendered %s, want %s-7-1.5", s, big65)
	}
}
