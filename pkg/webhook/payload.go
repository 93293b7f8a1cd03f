// Payload checks before a body is stored: UTF-8, nesting depth, number range.

package webhook

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	errNumberRange = errors.New("JSON number out of range")
)

// checkPayload rejects bodies that are not valid UTF-8 (encoding/json would
// silently replace the bad bytes), nest deeper than maxDepth, or hold a
// number beyond float64 (1e400 would make the whole event undecodable, so
// no rule could ever match it). One linear pass; JSON syntax is left to the
// decoder.
func checkPayload(body []byte, maxDepth int) error {
	if !utf8.Valid(body) {
		return errInvalidUTF8
	}
	if at, err := scanJSON(body, maxDepth); err != nil {
		return fmt.Errorf("%w at byte %d", err, at)
	}
	return nil
}

// depthExceeded returns the offset of the first bracket that opens level
// maxDepth+1, or -1.
func depthExceeded(body []byte, maxDepth int) int {
	if at, err := scanJSON(body, maxDepth); errors.Is(err, errTooDeep) {
		return at
	}
	return -1
}

// scanJSON walks the body once outside strings (brackets and digits inside
// strings, also after an escaped quote, do not count) and reports the first
// bracket beyond maxDepth or number beyond float64, with its offset.
func scanJSON(body []byte, maxDepth int) (int, error) {
	depth, inString, escaped := 0, false, false
	for i := 0; i < len(body); i++ {
		c := body[i]
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
				return i, fmt.Errorf("%w: over %d levels", errTooDeep, maxDepth)
			}
		case c == ']' || c == '}':
			depth--
		case c == '-' || c >= '0' && c <= '9':
			j := numberEnd(body, i)
			if _, err := strconv.ParseFloat(string(body[i:j]), 64); errors.Is(err, strconv.ErrRange) {
				return i, fmt.Errorf("%w: %.40s", errNumberRange, body[i:j])
			}
			i = j - 1
		}
	}
	return -1, nil
}

// numberEnd is the offset after the number literal starting at i.
func numberEnd(body []byte, i int) int {
	j := i + 1
	for j < len(body) && strings.IndexByte("0123456789.eE+-", body[j]) >= 0 {
		j++
	}
	return j
}
