// Package kv is the domain of kvstack: keys, values and the operations that
// change them, the last-writer-wins rule that orders those operations, the
// validation every key and value passes, the wire format of queued
// operations, and the read/write service that the HTTP edge calls.
//
// It knows nothing of HTTP, AMQP, SQL or Redis: the adapters translate their
// errors into the sentinel errors declared here.
package kv

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Kind says what an operation does to its key.
type Kind string

const (
	KindPut    Kind = "put"
	KindDelete Kind = "delete"
)

// Kinds lists every kind.
var Kinds = []Kind{KindPut, KindDelete}

// Op is one accepted write or delete. Its Version is assigned by the API when
// it accepts the operation and never changes afterwards.
type Op struct {
	Kind    Kind
	Key     string
	Value   string // empty for deletes
	Version Version
	// WrittenBy names who asked for the operation: the subject of the
	// client's token; empty when auth is off.
	WrittenBy string
}

// Entry is the state of one key as stored: a live value or, when Deleted, a
// tombstone that keeps the version of the delete so that an older write
// arriving late cannot resurrect the key.
type Entry struct {
	Key     string
	Value   string
	Version Version
	Deleted bool
	// WrittenBy is the writer of the operation whose state this is, as
	// the store keeps it (the cache does not).
	WrittenBy string
}

// Entry returns the state an operation leaves its key in once applied.
func (o Op) Entry() Entry {
	return Entry{Key: o.Key, Value: o.Value, Version: o.Version, Deleted: o.Kind == KindDelete, WrittenBy: o.WrittenBy}
}

// Source says where a read was served from.
type Source string

const (
	SourceRedis    Source = "redis"
	SourcePostgres Source = "postgres"
)

// Outcome is what became of one queued operation: the store's verdict
// (Applied, Duplicate, Stale), or DeadLettered for a message that can never
// be applied. Its String is the outcome label of
// kvstack_consumer_messages_total and kvstack.outcome on the message's span.
type Outcome int

const (
	// Applied: the operation is now the key's state.
	Applied Outcome = iota
	// Duplicate: the key already holds exactly this operation (a redelivery).
	Duplicate
	// Stale: the key holds a newer operation; this one was dropped.
	Stale
	// DeadLettered: the message cannot be decoded, or the store rejects its
	// operation for good; it went to the dead-letter queue.
	DeadLettered
)

// Outcomes lists every outcome, in order.
var Outcomes = []Outcome{Applied, Duplicate, Stale, DeadLettered}

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Stale:
		return "stale"
	case DeadLettered:
		return "dead_lettered"
	}
	return "unknown"
}

// Sentinel errors. Adapters wrap them; only the HTTP edge maps them to status
// codes.
var (
	// ErrNotFound: the key is absent or deleted.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the input breaks a rule (see ValidationError for which).
	ErrInvalid = errors.New("invalid input")
	// ErrUnavailable: a dependency could not take or serve the request now;
	// the caller may retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrCacheMiss: the cache holds nothing for the key.
	ErrCacheMiss = errors.New("cache miss")
	// ErrCacheDown: the cache is known not to answer and was not asked;
	// it is an ErrUnavailable, which the caller has already heard of.
	ErrCacheDown = fmt.Errorf("cache known down: %w", ErrUnavailable)
)

// NewVersion stamps an operation accepted at now with a fresh op id.
func NewVersion(now time.Time) Version {
	return Version{Time: Timestamp(now), OpID: uuid.New()}
}

// Timestamp normalises t the way every store keeps it: UTC, whole
// microseconds (PostgreSQL's resolution), so that versions compare the same
// in Go, PostgreSQL and Redis.
func Timestamp(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}
