// Regular expressions of the match, search and regex tests: the pattern
// language of Python's re (which ansible-rulebook's users write) on Go's
// RE2, with the differences translated or refused at load.

package rulebook

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Python re semantics kept on RE2:
//   - "$" (without multiline) matches at the end and also before a final
//     newline, as in a YAML block scalar ("text\n"); RE2's "$" only matches
//     at the very end, so it is rewritten to "(?:\n?\z)".
//   - "\Z" (end of string only) is RE2's "\z".
//   - match anchors at the start of the string ("^", so with multiline at
//     the start of any line, as Java's find("^" + p) which ansible-rulebook's
//     Drools runs); search and regex match anywhere.
//
// What RE2 cannot do, refused when the rulebook loads (or, for a pattern
// taken from an event, makes the test false): backreferences (\1,
// (?P=name)), lookahead and lookbehind ((?=, (?!, (?<=, (?<!) and
// conditional groups ((?(1)...)). RE2 guarantees linear time, which is why
// these do not exist. Also different: \d, \w, \s and \b are ASCII in RE2
// (Python 3 str patterns match Unicode digits and letters).

// errRE2 marks a Python re feature Go's RE2 engine cannot run.
var errRE2 = errors.New("not supported by Go's RE2 regular expressions")

// compileSearch compiles the pattern of a match/search/regex test; anchored
// makes match anchor at the start (select's operators never anchor).
func compileSearch(kind, pattern, flags string, anchored bool) (*regexp.Regexp, error) {
	p, err := pyPattern(pattern, strings.Contains(flags, "m"))
	if err != nil {
		return nil, fmt.Errorf("regular expression %q: %w", pattern, err)
	}
	if kind == "match" && anchored {
		p = "^(?:" + p + ")"
	}
	if flags != "" {
		p = "(?" + flags + ")" + p
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("regular expression %q: %w", pattern, err)
	}
	return re, nil
}

// unsupportedGroups are the group openings RE2 does not have.
var unsupportedGroups = []struct{ open, what string }{
	{"(?=", "lookahead (?=...)"},
	{"(?!", "negative lookahead (?!...)"},
	{"(?<=", "lookbehind (?<=...)"},
	{"(?<!", "negative lookbehind (?<!...)"},
	{"(?P=", "named backreference (?P=name)"},
	{"(?(", "conditional group (?(...)...)"},
}

// pyPattern rewrites a Python re pattern for RE2 (see above); multiline
// is whether "$" already means end of line.
func pyPattern(p string, multiline bool) (string, error) {
	multiline = multiline || inlineMultiline(p)
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			n := p[i+1]
			if n >= '1' && n <= '9' && !inClass {
				return "", fmt.Errorf("backreference \\%c is %w", n, errRE2)
			}
			if n == 'Z' && !inClass {
				b.WriteString(`\z`)
			} else {
				b.WriteByte(c)
				b.WriteByte(n)
			}
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
			b.WriteByte(c)
		case c == '[':
			inClass = true
			b.WriteByte(c)
			// a ']' right after '[' or '[^' is a literal
			if strings.HasPrefix(p[i+1:], "^]") {
				b.WriteString("^]")
				i += 2
			} else if strings.HasPrefix(p[i+1:], "]") {
				b.WriteByte(']')
				i++
			}
		case c == '(':
			for _, g := range unsupportedGroups {
				if strings.HasPrefix(p[i:], g.open) {
					return "", fmt.Errorf("%s is %w", g.what, errRE2)
				}
			}
			b.WriteByte(c)
		case c == '$' && !multiline:
			b.WriteString(`(?:\n?\z)`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// inlineFlags finds inline flag groups such as (?m) or (?im:...).
var inlineFlags = regexp.MustCompile(`\(\?[a-zA-Z]*m[a-zA-Z]*[:)]`)

// inlineMultiline reports whether p turns multiline on itself, e.g. (?m).
func inlineMultiline(p string) bool { return inlineFlags.MatchString(p) }
