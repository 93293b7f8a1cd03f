// Event filters of a source (ansible-rulebook's eda.builtin filters), as a
// table of functions.

package rulebook

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Event filters, as in ansible-rulebook's eda.builtin filters.
type filterFunc func(ev map[string]any, args map[string]any) ([]map[string]any, error)

var filterFuncs = map[string]filterFunc{
	"json_filter": jsonFilter,
	"dashes_to_underscores": func(ev, a map[string]any) ([]map[string]any, error) {
		return one(renameKeys(ev, dashes, overwrite(a))), nil
	},
	"normalize_keys": func(ev, a map[string]any) ([]map[string]any, error) {
		return one(renameKeys(ev, nonWord, overwrite(a))), nil
	},
	"insert_hosts_to_meta": insertHosts,
	"event_splitter":       eventSplitter,
	"noop":                 func(ev, _ map[string]any) ([]map[string]any, error) { return one(ev), nil },
	"insert_meta_info":     func(ev, _ map[string]any) ([]map[string]any, error) { return one(ev), nil },
}

func canonicalFilter(name string) string {
	for _, p := range []string{"eda.builtin.", "ansible.eda."} {
		name = strings.TrimPrefix(name, p)
	}
	return name
}

func filterNames() []string {
	var out []string
	for k := range filterFuncs {
		out = append(out, "eda.builtin."+k)
	}
	sort.Strings(out)
	return out
}

func applyFilters(fs []Filter, evs []map[string]any) ([]map[string]any, error) {
	for _, f := range fs {
		fn := filterFuncs[canonicalFilter(f.Name)]
		if fn == nil {
			return nil, fmt.Errorf("unknown filter %q", f.Name)
		}
		var next []map[string]any
		for _, ev := range evs {
			out, err := fn(ev, f.Args)
			if err != nil {
				return nil, fmt.Errorf("filter %s: %w", f.Name, err)
			}
			next = append(next, out...)
		}
		evs = next
	}
	return evs, nil
}

func one(ev map[string]any) []map[string]any { return []map[string]any{ev} }

func overwrite(a map[string]any) bool {
	if v, ok := a["overwrite"].(bool); ok {
		return v
	}
	return true
}

var nonWordRe = regexp.MustCompile(`\W+`)

func dashes(k string) string  { return strings.ReplaceAll(k, "-", "_") }
func nonWord(k string) string { return nonWordRe.ReplaceAllString(k, "_") }

func renameKeys(v map[string]any, fn func(string) string, over bool) map[string]any {
	out := make(map[string]any, len(v))
	for _, k := range sortedKeys(v) {
		nk := fn(k)
		val := renameAny(v[k], fn, over)
		if _, exists := out[nk]; exists && !over && nk != k {
			out[k] = val
			continue
		}
		out[nk] = val
	}
	return out
}

func renameAny(v any, fn func(string) string, over bool) any {
	switch x := v.(type) {
	case map[string]any:
		return renameKeys(x, fn, over)
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = renameAny(x[i], fn, over)
		}
		return out
	}
	return v
}

func strList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, it := range x {
			out = append(out, fmt.Sprint(it))
		}
		return out
	}
	return nil
}

func jsonFilter(ev, a map[string]any) ([]map[string]any, error) {
	inc, exc := strList(a["include_keys"]), strList(a["exclude_keys"])
	match := func(k string, pats []string) bool {
		for _, p := range pats {
			if ok, _ := path.Match(p, k); ok {
				return true
			}
		}
		return false
	}
	var walk func(m map[string]any) map[string]any
	walk = func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			if match(k, exc) && !match(k, inc) {
				continue
			}
			if sub, ok := v.(map[string]any); ok {
				v = walk(sub)
			}
			out[k] = v
		}
		return out
	}
	return one(walk(ev)), nil
}

func insertHosts(ev, a map[string]any) ([]map[string]any, error) {
	hp, _ := a["host_path"].(string)
	sep := "."
	if s, ok := a["path_separator"].(string); ok && s != "" {
		sep = s
	}
	var v any = ev
	for _, k := range strings.Split(hp, sep) {
		m, ok := v.(map[string]any)
		if !ok {
			v = nil
			break
		}
		v = m[k]
	}
	if v == nil {
		if r, _ := a["raise_error"].(bool); r {
			return nil, fmt.Errorf("host_path %q not found", hp)
		}
		return one(ev), nil
	}
	var hosts []any
	switch x := v.(type) {
	case string:
		if hs, ok := a["host_separator"].(string); ok && hs != "" {
			for _, h := range strings.Split(x, hs) {
				hosts = append(hosts, strings.TrimSpace(h))
			}
		} else {
			hosts = []any{x}
		}
	case []any:
		hosts = x
	default:
		return nil, fmt.Errorf("host_path %q is neither a string nor a list", hp)
	}
	meta, _ := ev["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["hosts"] = hosts
	ev["meta"] = meta
	return one(ev), nil
}

func eventSplitter(ev, a map[string]any) ([]map[string]any, error) {
	key, _ := a["splitter_key"].(string)
	var v any = ev
	for _, k := range strings.Split(key, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			v = nil
			break
		}
		v = m[k]
	}
	list, ok := v.([]any)
	if !ok {
		if r, _ := a["raise_error"].(bool); r {
			return nil, fmt.Errorf("splitter_key %q is not a list", key)
		}
		return one(ev), nil
	}
	var out []map[string]any
	for _, it := range list {
		m, ok := deepCopyAny(it).(map[string]any)
		if !ok {
			m = map[string]any{"value": it}
		}
		if akm, ok := a["attributes_key_map"].(map[string]any); ok {
			for newKey, from := range akm {
				fv, _ := walk(ev, toSegs(fmt.Sprint(from)))
				m[newKey] = fv
			}
		}
		if ex, ok := a["extras"].(map[string]any); ok {
			for k, val := range ex {
				m[k] = val
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func toSegs(p string) []any {
	var segs []any
	for _, s := range strings.Split(p, ".") {
		segs = append(segs, s)
	}
	return segs
}
