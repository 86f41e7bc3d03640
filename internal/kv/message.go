package kv

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// TimestampLayout is the wire form of an operation's timestamp: RFC 3339 in
// UTC with exactly six fractional digits.
const TimestampLayout = "2006-01-02T15:04:05.000000Z07:00"

// message is the JSON body of a queued operation (see docs/DESIGN.md, Messages).
type message struct {
	Key       string  `json:"key"`
	Value     *string `json:"value,omitempty"`
	Timestamp string  `json:"timestamp"`
	OpID      string  `json:"op_id"`
}

// EncodeMessage renders op as the body of its queue's message.
func EncodeMessage(op Op) ([]byte, error) {
	m := message{
		Key:       op.Key,
		Timestamp: op.Version.Time.UTC().Format(TimestampLayout),
		OpID:      op.Version.OpID.String(),
	}
	if op.Kind == KindPut {
		m.Value = &op.Value
	}
	return json.Marshal(m)
}

// DecodeMessage parses the body of a message taken from the queue of the
// given kind and validates it against limits. Any error wraps ErrInvalid: the
// message can never be applied, however often it is retried.
func DecodeMessage(kind Kind, body []byte, limits Limits) (Op, error) {
	if !utf8.Valid(body) {
		return Op{}, invalid("body", "not valid UTF-8")
	}
	// One JSON object and nothing after it: Unmarshal refuses trailing data
	// itself, without a Decoder's buffer to allocate per message.
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		return Op{}, invalid("body", "not a JSON message: %v", err)
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Timestamp)
	if err != nil {
		return Op{}, invalid("timestamp", "not RFC 3339: %q", m.Timestamp)
	}
	id, err := uuid.Parse(m.OpID)
	if err != nil {
		return Op{}, invalid("op_id", "not a UUID: %q", m.OpID)
	}
	op := Op{Kind: kind, Key: m.Key, Version: Version{Time: Timestamp(ts), OpID: id}}
	switch kind {
	case KindPut:
		if m.Value == nil {
			return Op{}, invalid("value", "missing")
		}
		op.Value = *m.Value
	case KindDelete:
	default:
		return Op{}, fmt.Errorf("decode message: unknown kind %q: %w", kind, ErrInvalid)
	}
	if err := limits.ValidateOp(op); err != nil {
		return Op{}, err
	}
	return op, nil
}
