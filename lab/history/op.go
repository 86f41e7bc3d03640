package history

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kvstack/kvstack/internal/kv"
)

// Kind is what an operation did.
type Kind string

const (
	Put    Kind = "put"
	Delete Kind = "delete"
	Get    Kind = "get"
)

// Outcome is what the answer told about an operation's effect.
type Outcome int

const (
	// Done: a read answered 200 or 404, or a write answered 200
	// (applied or superseded: visible to every later reader).
	Done Outcome = iota
	// Accepted: a write answered 202, durable, applied later: a plain
	// write's answer, or a waited write's once its wait ran out.
	Accepted
	// Unknown: no answer, or one that promises nothing either way (a
	// 5xx, a 503): the operation may take effect later, or never.
	Unknown
	// Refused: a 4xx; nothing changed.
	Refused
)

func (o Outcome) String() string {
	return [...]string{"done", "accepted", "unknown", "refused"}[o]
}

// Op is one client operation: what was asked, when, and what came back.
type Op struct {
	Client int
	Key    string
	Kind   Kind
	// Value: the value a PUT wrote, or the one a GET returned (Found).
	Value string
	// Found: a GET answered 200 (else 404).
	Found bool
	// Wait: a write sent with ?wait=applied.
	Wait bool
	// Token is the token the answer named: a write's own, or the state a
	// GET returned ("" for a key never written). Version is what it stands
	// for (zero: none).
	Token   string
	Version kv.Version
	// MinToken is the token a GET carried (?min_version=), MinVersion
	// what it stands for (zero: none).
	MinToken   string
	MinVersion kv.Version
	// Call and Return: when the request was sent and its answer read.
	Call, Return time.Time
	Outcome      Outcome
	Status       int    // the HTTP status; 0: no answer
	Err          string // what went wrong, when it did
}

func (o Op) String() string {
	s := fmt.Sprintf("client %d %s %s", o.Client, o.Kind, o.Key)
	if o.Kind == Put {
		s += fmt.Sprintf(" %q", o.Value)
	}
	if o.Wait {
		s += " wait=applied"
	}
	if o.MinToken != "" {
		s += " min_version=" + o.MinVersion.String()
	}
	s += fmt.Sprintf(" -> %d %s", o.Status, o.Outcome)
	if o.Kind == Get && o.Outcome == Done {
		if o.Found {
			s += fmt.Sprintf(" %q", o.Value)
		} else {
			s += " absent"
		}
	}
	if !o.Version.Time.IsZero() {
		s += " @" + o.Version.String()
	}
	if o.Err != "" {
		s += " (" + o.Err + ")"
	}
	return s
}

// Recorder collects the operations of many clients. It is safe for
// concurrent use.
type Recorder struct {
	mu  sync.Mutex
	ops []Op
}

// Add records a finished operation.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// Ops returns the recorded operations, by the time they were sent.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	out := slices.Clone(r.ops)
	r.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Op) int { return a.Call.Compare(b.Call) })
	return out
}

// tokenVersionBytes: a token is base64url of the version's timestamp
// (microseconds, 8 bytes big-endian) and op id (16 bytes), then a MAC
// (internal/token). The checker reads the version without the key: it
// orders states, it does not trust them.
const tokenVersionBytes = 8 + 16

// VersionOf returns the version a token stands for, without checking its
// signature.
func VersionOf(token string) (kv.Version, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < tokenVersionBytes {
		return kv.Version{}, fmt.Errorf("token %q is not one the API issues", token)
	}
	return kv.Version{
		Time: time.UnixMicro(int64(binary.BigEndian.Uint64(raw[:8]))).UTC(),
		OpID: uuid.UUID(raw[8:tokenVersionBytes]),
	}, nil
}
