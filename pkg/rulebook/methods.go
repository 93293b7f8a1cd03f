// Template filters ({{ x | name(args) }}) and Python methods
// ({{ x.name(args) }}) as tables, one small function each, like the event
// filters in filters.go.

package rulebook

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// templateFilter is one template filter: the value piped in, the arguments.
type templateFilter func(v any, args []any) (any, error)

var templateFilters = map[string]templateFilter{
	"string":        func(v any, _ []any) (any, error) { return toString(v), nil },
	"int":           filterInt,
	"float":         filterFloat,
	"bool":          filterBool,
	"lower":         func(v any, _ []any) (any, error) { return strings.ToLower(toString(v)), nil },
	"upper":         func(v any, _ []any) (any, error) { return strings.ToUpper(toString(v)), nil },
	"length":        filterLength,
	"count":         filterLength,
	"first":         func(v any, _ []any) (any, error) { return filterEnd(v, true) },
	"last":          func(v any, _ []any) (any, error) { return filterEnd(v, false) },
	"join":          filterJoin,
	"tojson":        filterToJSON,
	"to_json":       filterToJSON,
	"basename":      func(v any, _ []any) (any, error) { return path.Base(toString(v)), nil },
	"dirname":       func(v any, _ []any) (any, error) { return path.Dir(toString(v)), nil },
	"normpath":      func(v any, _ []any) (any, error) { return path.Clean(toString(v)), nil },
	"replace":       filterReplace,
	"regex_replace": filterRegexReplace,
}

func filterInt(v any, _ []any) (any, error) {
	if b, ok := v.(*big.Int); ok {
		return b, nil
	}
	if f, ok := toFloat(v); ok {
		return int64(f), nil
	}
	n, err := parseInt(strings.TrimSpace(toString(v)))
	if err != nil {
		return int64(0), nil
	}
	return n, nil
}

func filterFloat(v any, _ []any) (any, error) {
	if f, ok := toFloat(v); ok {
		return f, nil
	}
	f, _ := strconv.ParseFloat(strings.TrimSpace(toString(v)), 64)
	return f, nil
}

func filterBool(v any, _ []any) (any, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		l := strings.ToLower(x)
		return l == "true" || l == "yes" || l == "on" || l == "1", nil
	}
	f, _ := toFloat(v)
	return f != 0, nil
}

func filterLength(v any, _ []any) (any, error) {
	switch x := v.(type) {
	case string:
		return int64(len(x)), nil
	case []any:
		return int64(len(x)), nil
	case map[string]any:
		return int64(len(x)), nil
	}
	return nil, errors.New("object has no length")
}

func filterEnd(v any, first bool) (any, error) {
	l, ok := v.([]any)
	if !ok || len(l) == 0 {
		return nil, errors.New("needs a non-empty list")
	}
	if first {
		return l[0], nil
	}
	return l[len(l)-1], nil
}

func filterJoin(v any, args []any) (any, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, errors.New("needs a list")
	}
	sep := ""
	if len(args) > 0 {
		sep = toString(args[0])
	}
	return joinStrings(l, sep), nil
}

func joinStrings(l []any, sep string) string {
	parts := make([]string, len(l))
	for i, x := range l {
		parts[i] = toString(x)
	}
	return strings.Join(parts, sep)
}

func filterToJSON(v any, _ []any) (any, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func filterReplace(v any, args []any) (any, error) {
	if len(args) < 2 {
		return nil, errors.New("replace(old, new)")
	}
	return strings.ReplaceAll(toString(v), toString(args[0]), toString(args[1])), nil
}

func filterRegexReplace(v any, args []any) (any, error) {
	pos, kw := splitKw(args)
	if len(pos) < 1 {
		return nil, errors.New("regex_replace(pattern, replacement='', ignorecase=False, count=0)")
	}
	pat := toString(pos[0])
	if b, _ := kw["ignorecase"].(bool); b {
		pat = "(?i)" + pat
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return nil, fmt.Errorf("regex_replace: %w", err)
	}
	repl := ""
	if len(pos) > 1 {
		repl = pyBackrefs.ReplaceAllString(toString(pos[1]), "$${$1}")
	}
	count := -1
	if c, ok := kw["count"].(int64); ok && c > 0 {
		count = int(c)
	}
	n := 0
	return re.ReplaceAllStringFunc(toString(v), func(m string) string {
		if count >= 0 && n >= count {
			return m
		}
		n++
		return re.ReplaceAllString(m, repl)
	}), nil
}

var pyBackrefs = regexp.MustCompile(`\\(\d+)`)

func splitKw(args []any) ([]any, map[string]any) {
	var pos []any
	kw := map[string]any{}
	for _, a := range args {
		if k, ok := a.(kwArg); ok {
			kw[k.name] = k.value
			continue
		}
		pos = append(pos, a)
	}
	return pos, kw
}

// argStr is argument i as a string ("" when absent).
func argStr(args []any, i int) string {
	if i < len(args) {
		return toString(args[i])
	}
	return ""
}

// The Python methods of str, dict and list that templates use in rulebooks.
var (
	strMethods = map[string]func(x string, args []any) (any, error){
		"lower":      func(x string, _ []any) (any, error) { return strings.ToLower(x), nil },
		"upper":      func(x string, _ []any) (any, error) { return strings.ToUpper(x), nil },
		"capitalize": strCapitalize,
		"title":      strTitle,
		"strip":      func(x string, a []any) (any, error) { return strings.Trim(x, stripSet(a)), nil },
		"lstrip":     func(x string, a []any) (any, error) { return strings.TrimLeft(x, stripSet(a)), nil },
		"rstrip":     func(x string, a []any) (any, error) { return strings.TrimRight(x, stripSet(a)), nil },
		"split":      strSplit,
		"startswith": func(x string, a []any) (any, error) { return strings.HasPrefix(x, argStr(a, 0)), nil },
		"endswith":   func(x string, a []any) (any, error) { return strings.HasSuffix(x, argStr(a, 0)), nil },
		"replace":    func(x string, a []any) (any, error) { return strings.ReplaceAll(x, argStr(a, 0), argStr(a, 1)), nil },
		"count":      func(x string, a []any) (any, error) { return int64(strings.Count(x, argStr(a, 0))), nil },
		"find":       func(x string, a []any) (any, error) { return int64(strings.Index(x, argStr(a, 0))), nil },
		"join":       strJoin,
		"isdigit":    strIsDigit,
	}
	dictMethods = map[string]func(x map[string]any, args []any) (any, error){
		"get":    dictGet,
		"keys":   func(x map[string]any, _ []any) (any, error) { return dictItems(x, "keys"), nil },
		"values": func(x map[string]any, _ []any) (any, error) { return dictItems(x, "values"), nil },
		"items":  func(x map[string]any, _ []any) (any, error) { return dictItems(x, "items"), nil },
	}
	listMethods = map[string]func(x []any, args []any) (any, error){
		"index": listIndex,
		"count": listCount,
	}
)

func callMethod(v any, name string, args []any) (any, error) {
	switch x := v.(type) {
	case string:
		if m, ok := strMethods[name]; ok {
			return m(x, args)
		}
	case map[string]any:
		if m, ok := dictMethods[name]; ok {
			return m(x, args)
		}
	case []any:
		if m, ok := listMethods[name]; ok {
			return m(x, args)
		}
	}
	return nil, fmt.Errorf("no method %s on %T", name, v)
}

func strCapitalize(x string, _ []any) (any, error) {
	if x == "" {
		return x, nil
	}
	return strings.ToUpper(x[:1]) + strings.ToLower(x[1:]), nil
}

func strTitle(x string, _ []any) (any, error) {
	words := strings.Fields(x)
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + strings.ToLower(w[1:])
	}
	return strings.Join(words, " "), nil
}

// stripSet is the characters strip removes: the argument, or whitespace.
func stripSet(args []any) string {
	if len(args) > 0 && args[0] != nil {
		return argStr(args, 0)
	}
	return " \t\n\r\v\f"
}

func strSplit(x string, args []any) (any, error) {
	var parts []string
	n := -1
	if len(args) > 1 {
		if m, ok := args[1].(int64); ok && m >= 0 {
			n = int(m) + 1
		}
	}
	if len(args) == 0 || args[0] == nil {
		parts = strings.Fields(x)
	} else {
		parts = strings.SplitN(x, argStr(args, 0), n)
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

func strJoin(x string, args []any) (any, error) {
	if len(args) != 1 {
		return nil, errors.New("join needs a list")
	}
	list, ok := args[0].([]any)
	if !ok {
		return nil, errors.New("join needs a list")
	}
	return joinStrings(list, x), nil
}

func strIsDigit(x string, _ []any) (any, error) {
	_, err := strconv.ParseUint(x, 10, 64)
	return err == nil && x != "", nil
}

func dictGet(x map[string]any, args []any) (any, error) {
	if e, ok := x[argStr(args, 0)]; ok {
		return e, nil
	}
	if len(args) > 1 {
		return args[1], nil
	}
	return nil, nil
}

// dictItems is keys(), values() or items() in key order.
func dictItems(x map[string]any, which string) []any {
	keys := sortedKeys(x)
	out := make([]any, len(keys))
	for i, k := range keys {
		switch which {
		case "keys":
			out[i] = k
		case "values":
			out[i] = x[k]
		default:
			out[i] = []any{k, x[k]}
		}
	}
	return out
}

func listIndex(x []any, args []any) (any, error) {
	if len(args) != 1 {
		return nil, errors.New("index needs a value")
	}
	for i, e := range x {
		if jsonEqual(e, args[0]) {
			return int64(i), nil
		}
	}
	return nil, errors.New("value not in list")
}

func listCount(x []any, args []any) (any, error) {
	n := 0
	for _, e := range x {
		if len(args) > 0 && jsonEqual(e, args[0]) {
			n++
		}
	}
	return int64(n), nil
}
