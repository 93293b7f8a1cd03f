// Tests of condition operators, one row each.

package rulebook

import (
	"fmt"
	"testing"
)

// Operators and the traps of eda.md §7, one row each.
func TestOperators(t *testing.T) {
	ev := map[string]any{
		"i": int64(3), "f": 3.0, "s": "abc", "b": true, "n": nil,
		"l": []any{int64(10), int64(20), int64(30)}, "names": []any{"x", "y"},
		"people": []any{map[string]any{"age": int64(30), "name": "ann"}, map[string]any{"age": int64(50), "name": "bob"}},
		"nested": map[string]any{"k-1": "v", "a": []any{map[string]any{"b": "deep"}}},
		"msg":    "Winter\nis\ncoming", "url": "https://Example.com/x",
	}
	tests := []struct {
		cond string
		want bool
	}{
		{"event.i == 3", true},
		{"event.i == 3.0", true},                                     // int/float mix
		{"event.i == '3'", false},                                    // type mismatch is false
		{"event.i != '3'", false},                                    // ... even for !=
		{"event.missing != 1", false},                                // missing attribute is false
		{"not event.missing == 1", false},                            // ... also under not
		{"event.n == null", true},                                    // null
		{"event.s != null", true},                                    //
		{"not event.n", true},                                        // bare path is == true; negated, null != true
		{"event.b", true},                                            //
		{"event.s", false},                                           // a string is not true
		{"event.i > 2 and event.i < 4", true},                        //
		{"event.i > 5 or event.i == 3", true},                        //
		{"event.i == 1 or event.i == 3 and event.s == 'zzz'", false}, // and/or share one level, left to right
		{"event.i == 1 or (event.i == 3 and event.s == 'abc')", true},
		{"event.i + 2 == 5", true},
		{"event.i - 1 == 2", true},
		{"event.i in [1, 2, 3]", true},
		{"event.i in [1.0, 3.0]", true},
		{"event.i not in [1, 2]", true},
		{"event.l contains 20", true},
		{"event.l not contains 25", true},
		{"event.s contains 'b'", false}, // contains on a scalar is equality, not substring
		{"event.s is defined", true},
		{"event.zzz is not defined", true},
		{"event.nested['k-1'] == 'v'", true},
		{"event.nested.a[0].b == 'deep'", true},
		{"event.l[-1] == 30", true},
		{"event.url is match('https://example', ignorecase=true)", true},
		{"event.url is match('Example')", false}, // match is anchored
		{"event.url is search('Example')", true},
		{"event.url is regex('com/x$')", true},
		{"event.msg == \"Winter\\nis\\ncoming\"", true}, // \n escapes
		{"event.l is select('>', 25)", true},
		{"event.l is not select('>', 25)", true}, // "not all" pass
		{"event.l is not select('>', 5)", false},
		{"event.people is selectattr('age', '>', 40)", true},
		{"event.people is selectattr('name', 'in', ['carl'])", false},
		{"event.names is selectattr('x', '==', 1)", false},
		{"event.s == abc", true}, // a bare word is a string
	}
	for _, tt := range tests {
		t.Run(tt.cond, func(t *testing.T) {
			c, _, err := parseCondition(tt.cond, map[string]any{})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.test(&env{cur: ev}); got != tt.want {
				t.Fatalf("%s = %v, want %v", tt.cond, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, cond := range []string{
		"event.a * 2 == 4",   // * is not supported
		"xyz.a == 1",         // unknown prefix is a bare word, then a dangling .a
		"event is defined",   // bare event
		"event.a == ",        // incomplete
		"event.a is frobbed", // unknown test
		"vars.missing == 1",  // vars resolved at load
		"event.a == 'unterminated",
	} {
		if _, _, err := parseCondition(cond, map[string]any{}); err == nil {
			t.Errorf("%q parsed without error", cond)
		}
	}
}

func TestTemplates(t *testing.T) {
	ctx := map[string]any{"event": map[string]any{"resource": map[string]any{"a": int64(1)}, "zip": "12345", "name": "x", "n": nil,
		"host": "host1.net", "rubble": "Bamm Bamm Rubble", "words": []any{"a", "b"}}, "org": "Default"}
	tests := []struct {
		in   string
		want string
	}{
		{"{{ event.resource }}", "map[a:1]"},        // native type kept
		{"{{ event.zip }}", "12345"},                // literal_eval to int
		{"name-{{ event.name }}", "name-x"},         // mixed text
		{"state: {{ event.n }}", "state: None"},     // Python str()
		{"{{ event.missing | default('d') }}", "d"}, // default filter
		{"{{ org | lower }}", "default"},            //
		{"plain", "plain"},                          // no template
		// Python methods and filters that ansible-rulebook's templates use (case 97).
		{" {{ event.host.split('.') | first }} ", " host1 "},
		{"{{ event.host.capitalize() }}", "Host1.net"},
		{"{{ event.host.upper().replace('.NET', '') }}", "HOST1"},
		{"{{ event.host.split('.')[1] }}", "net"},
		{"{{ event.host.startswith('host') }}", "true"},
		{"{{ event.resource.get('a') }}", "1"},
		{"{{ event.resource.get('zz', 'none') }}", "none"},
		{"{{ event.resource.keys() | join(',') }}", "a"},
		{"{{ '-'.join(event.words) }}", "a-b"},
		{"{{ event.host | regex_replace('host1', 'host195') }}", "host195.net"},
		{"{{ event.rubble | regex_replace('Bamm', 'Betty', count=1) }}", "Betty Bamm Rubble"},
		{"{{ event.host | regex_replace('(\\w+)\\.(\\w+)', '\\2.\\1') }}", "net.host1"},
	}
	for _, tt := range tests {
		got, err := renderString(tt.in, ctx)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if s := fmt.Sprint(got); s != tt.want {
			t.Errorf("%s = %q, want %q", tt.in, s, tt.want)
		}
	}
	if v, _ := renderString("{{ event.zip }}", ctx); fmt.Sprintf("%T", v) != "int64" {
		t.Errorf("single expression string %T, want int64", v)
	}
	if _, err := renderString("x {{ event.missing }}", ctx); err == nil {
		t.Error("undefined variable rendered without error")
	}
}

func FuzzParseCondition(f *testing.F) {
	for _, s := range []string{"event.a == 1", "event.l is selectattr('a', '>', 1)", "not (event.a or event.b)", "events.x << event.i == 1", "event['k'][0] in [1, 'a', null]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, _, err := parseCondition(s, map[string]any{"x": int64(1)})
		if err == nil {
			c.test(&env{cur: map[string]any{"a": int64(1), "l": []any{map[string]any{"a": int64(2)}}}})
		}
	})
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("- name: x\n  hosts: all\n  sources:\n    - range: {limit: 1}\n  rules:\n    - name: r\n      condition: event.i == 1\n      action:\n        debug:\n"))
	f.Add([]byte("- name: y\n  hosts: all\n  sources: [{generic: {}}]\n  rules:\n    - name: r\n      condition:\n        all: [event.a == 1, event.b == 2]\n      actions: [{print_event: }]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rb, err := Load(b, "fuzz.yml", nil)
		if err == nil {
			_, _ = NewSession(rb, Options{}).Process(map[string]any{"payload": map[string]any{"i": int64(1)}})
		}
	})
}

// Rendering never panics, whatever the template.
func FuzzRender(f *testing.F) {
	for _, s := range []string{"{{ event.a.split('.')[0] }}", "x {{ event.l | join(',') }} y", "{{ ','.join() }}", "{{ event.l.index() }}",
		"{{ event.a | regex_replace('(a', 'b', count=2) }}", "{{ event.m.get('k', 1).upper() }}", "{{ event.a.strip(None).title() }}"} {
		f.Add(s)
	}
	ctx := map[string]any{"event": map[string]any{"a": "x.y", "l": []any{"p", int64(2)}, "m": map[string]any{"k": "v"}}}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = renderString(s, ctx)
		_, _ = renderCompiled(compileArgs(map[string]any{"k": s}, nil), ctx)
	})
}
