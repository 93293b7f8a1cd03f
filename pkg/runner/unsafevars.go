package runner

// Extra vars come from events, and everything in an event is hostile: Ansible
// templates extra vars, so a VolumeSnapshot annotation holding
// "{{ lookup('pipe', ...) }}" would run a command on this host. The runner
// therefore hands them to ansible-playbook as a YAML file in which every
// string, mapping keys included, carries Ansible's `!unsafe` tag: such values
// are data and never templated, also after set_fact, loops or dict2items.
// This is what AWX does with launch-time extra vars (safe_dump), so a job
// behaves the same under the Controller and here.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	yaml "go.yaml.in/yaml/v3"
)

const unsafeTag = "!unsafe"

// encodeUnsafeVars renders vars as a YAML document whose strings are all
// tagged !unsafe. Values are first normalised through JSON, so the encoder
// sees only maps, lists, strings, numbers, booleans and null.
func encodeUnsafeVars(vars map[string]any) ([]byte, error) {
	raw, err := json.Marshal(vars)
	if err != nil {
		return nil, fmt.Errorf("encode extra vars: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var norm any
	if err := dec.Decode(&norm); err != nil {
		return nil, fmt.Errorf("normalise extra vars: %w", err)
	}
	node, err := unsafeNode(norm)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{node}}); err != nil {
		return nil, fmt.Errorf("encode extra vars: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode extra vars: %w", err)
	}
	return buf.Bytes(), nil
}

func unsafeNode(v any) (*yaml.Node, error) {
	switch x := v.(type) {
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}, nil
	case json.Number:
		tag := "!!float"
		if _, err := x.Int64(); err == nil || isInteger(string(x)) {
			tag = "!!int"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(x)}, nil
	case string:
		return unsafeString(x), nil
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range x {
			c, err := unsafeNode(e)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		return n, nil
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c, err := unsafeNode(x[k])
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, unsafeString(k), c)
		}
		return n, nil
	default:
		return nil, fmt.Errorf("extra vars: unexpected %T", v)
	}
}

func unsafeString(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: unsafeTag, Style: yaml.DoubleQuotedStyle, Value: s}
}

// isInteger reports whether a JSON number literal has no fraction or
// exponent (an integer too large for int64 stays an integer, as in Python).
func isInteger(s string) bool {
	for i, r := range s {
		if (r < '0' || r > '9') && !(i == 0 && r == '-') {
			return false
		}
	}
	return s != "" && s != "-"
}
