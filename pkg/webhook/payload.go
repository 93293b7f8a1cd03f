package webhook

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxJSONDepth is the deepest accepted nesting of JSON arrays and objects
// (`{"a":1}` has depth 1). Forwarder events (Kubernetes objects including
// managedFields) stay far below it. Without a bound, the indented output of
// /api/v1/events?payload=true grows with depth times size, i.e.
// quadratically in the body.
const MaxJSONDepth = 64

var (
	errInvalidUTF8 = errors.New("payload is not valid UTF-8")
	errTooDeep     = errors.New("JSON nesting too deep")
)

// checkPayload rejects bodies that are not valid UTF-8 (encoding/json would
// silently replace the bad bytes) or nest deeper than maxDepth. Both checks
// are single linear passes; JSON syntax is left to the decoder.
func checkPayload(body []byte, maxDepth int) error {
	if !utf8.Valid(body) {
		return errInvalidUTF8
	}
	if at := depthExceeded(body, maxDepth); at >= 0 {
		return fmt.Errorf("%w: over %d levels at byte %d", errTooDeep, maxDepth, at)
	}
	return nil
}

// depthExceeded returns the offset of the first bracket that opens level
// maxDepth+1, or -1. Brackets inside strings (including after an escaped
// quote) do not count.
func depthExceeded(body []byte, maxDepth int) int {
	depth, inString, escaped := 0, false, false
	for i, c := range body {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return i
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return -1
}
