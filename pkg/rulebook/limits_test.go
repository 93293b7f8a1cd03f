// Tests of the loader's bounds (condition nesting depth, duration range).

package rulebook

import (
	"strings"
	"testing"
	"time"
)

// Hostile rulebooks fail to load with a reason instead of exhausting time,
// memory or the stack, and times that would overflow are refused instead of
// wrapping to a window that disables throttling (issue 15, low).
func TestNestingLimit(t *testing.T) {
	cases := []struct {
		name, cond string
		ok         bool
	}{
		{"ordinary nesting", "((event.a == 1) and (not (event.b == 2)))", true},
		{"at the limit", strings.Repeat("(", maxNesting-1) + "event.a == 1" + strings.Repeat(")", maxNesting-1), true},
		{"parentheses beyond the limit", strings.Repeat("(", maxNesting+1) + "event.a == 1" + strings.Repeat(")", maxNesting+1), false},
		{"10^5 parentheses", strings.Repeat("(", 100000) + "event.a == 1" + strings.Repeat(")", 100000), false},
		{"10^5 negations", strings.Repeat("not ", 100000) + "event.a == 1", false},
		{"nested lists", "event.a in " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, _, err := parseCondition(c.cond, map[string]any{})
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if !c.ok && !strings.Contains(err.Error(), "nests deeper") {
				t.Errorf("error does not say why: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestParseDurationBounds(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"5 minutes", 5 * time.Minute, true},
		{"36500 days", 36500 * 24 * time.Hour, true},
		{"36501 days", 0, false},
		{"9999999999999999999 seconds", 0, false},
		{"106752 days", 0, false}, // would wrap past int64 nanoseconds
	}
	for _, c := range cases {
		got, err := parseDuration(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}
