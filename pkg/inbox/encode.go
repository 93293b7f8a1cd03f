package inbox

import (
	"encoding/binary"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// encodeNew encodes a new pending entry like encodeEntry, writing the JSON
// header by hand: it is on every append's path, where encoding/json's
// reflection and map sorting cost more than the rest of the header work.
// decodeEntry reads both forms.
func encodeNew(e *Entry) []byte {
	h := appendHeader(make([]byte, 0, 256), e)
	buf := make([]byte, 0, 1+binary.MaxVarintLen64+len(h)+len(e.Payload))
	buf = append(buf, stateByte(e.State))
	buf = binary.AppendUvarint(buf, uint64(len(h)))
	buf = append(buf, h...)
	return append(buf, e.Payload...)
}

func appendHeader(buf []byte, e *Entry) []byte {
	buf = append(buf, `{"seq":`...)
	buf = strconv.AppendUint(buf, e.Seq, 10)
	if e.ID != "" {
		buf = append(buf, `,"id":`...)
		buf = appendJSONString(buf, e.ID)
	}
	buf = append(buf, `,"uuid":`...)
	buf = appendJSONString(buf, e.UUID)
	buf = append(buf, `,"endpoint":`...)
	buf = appendJSONString(buf, e.Endpoint)
	if len(e.Headers) > 0 {
		buf = append(buf, `,"headers":{`...)
		keys := make([]string, 0, len(e.Headers))
		for k := range e.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, k)
			buf = append(buf, ':')
			buf = appendJSONString(buf, e.Headers[k])
		}
		buf = append(buf, '}')
	}
	buf = append(buf, `,"received_at":"`...)
	buf = e.ReceivedAt.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","state":`...)
	buf = appendJSONString(buf, e.State)
	if e.ObjectKey != "" {
		buf = append(buf, `,"object_key":`...)
		buf = appendJSONString(buf, e.ObjectKey)
	}
	if e.ResourceVersion != "" {
		buf = append(buf, `,"resource_version":`...)
		buf = appendJSONString(buf, e.ResourceVersion)
	}
	if e.Deleted {
		buf = append(buf, `,"deleted":true`...)
	}
	return append(buf, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string (invalid UTF-8 becomes U+FFFD,
// as encoding/json does).
func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c < 0x20:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, `\ufffd`...)
		} else {
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}
