package inbox

// The stored forms: seqKey (an entry's or job's bbolt key) and the value
// layout of an entry (encodeEntry, decodeEntry, splitEntry), with its leading
// state byte (stateByte, stateOf) that lets scans skip entries by state
// without decoding them. The hand-written encoder for new entries on the
// append path is encodeNew, in encode.go.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

func seqKey(seq uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return b[:]
}

// Stored value layout: one state byte, uvarint length of the JSON header,
// the header (Entry without payload), then the raw payload bytes. Keeping the
// payload out of the JSON header avoids re-encoding request bodies.
func encodeEntry(e *Entry) ([]byte, error) {
	payload := e.Payload
	e.Payload = nil
	h, err := json.Marshal(e)
	e.Payload = payload
	if err != nil {
		return nil, fmt.Errorf("inbox: encode entry: %w", err)
	}
	buf := make([]byte, 0, 1+binary.MaxVarintLen64+len(h)+len(payload))
	buf = append(buf, stateByte(e.State))
	buf = binary.AppendUvarint(buf, uint64(len(h)))
	buf = append(buf, h...)
	buf = append(buf, payload...)
	return buf, nil
}

func decodeEntry(v []byte, withPayload bool) (*Entry, error) {
	h, payload, err := splitEntry(v)
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(h, &e); err != nil {
		return nil, fmt.Errorf("inbox: decode entry: %w", err)
	}
	if withPayload {
		e.Payload = append(json.RawMessage(nil), payload...)
	}
	return &e, nil
}

// splitEntry returns a stored value's JSON header and payload.
func splitEntry(v []byte) (header, payload []byte, err error) {
	if len(v) < 2 {
		return nil, nil, errors.New("inbox: short entry")
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n > uint64(len(v)) || 1+w+int(n) > len(v) {
		return nil, nil, errors.New("inbox: corrupt entry header")
	}
	return v[1+w : 1+w+int(n)], v[1+w+int(n):], nil
}

func stateByte(s string) byte {
	switch s {
	case StatePending:
		return 'p'
	case StateFailed:
		return 'f'
	default:
		return 'd'
	}
}

func stateOf(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	switch v[0] {
	case 'p':
		return StatePending
	case 'f':
		return StateFailed
	default:
		return StateDone
	}
}
