package kv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvstack/kvstack/internal/envdefault"
)

// Reading your writes. Every accepted operation's version is handed to the
// client (as a token, at the HTTP edge); a read may ask for a state at least
// that new (GetAtLeast), and a write may wait until it is applied
// (PutApplied, DeleteApplied). Waiting is driven by news of applied
// versions that the consumer sends when its transaction commits (Waiters),
// with a slow poll of the store behind it for news that got lost. A write
// that waited answers once its state is visible to plain reads too: the
// waiter brings the cache to it first.

// WaitConfig bounds waiting.
type WaitConfig struct {
	// Timeout is how long a request waits unless it asks for another
	// bound; Max caps what it may ask for (and Timeout itself).
	Timeout time.Duration `env:"KV_WAIT_TIMEOUT" envDefault:"5s"`
	Max     time.Duration `env:"KV_WAIT_MAX" envDefault:"30s"`
	// Poll is how often a waiter reads the store when no news came: it
	// covers news lost while the listener reconnected.
	Poll time.Duration `env:"KV_WAIT_POLL" envDefault:"1s"`
	// MaxWaiters caps the requests waiting at once in one process; beyond
	// it a request that would wait is refused (ErrTooManyWaiters).
	MaxWaiters int `env:"KV_MAX_WAITERS" envDefault:"1000"`
	// MaxWaitersPerClient is one client's share of MaxWaiters (a client is
	// a token's subject): beyond it that client's request that would wait
	// is refused (ErrTooManyClientWaiters), so that no one client holds
	// every waiter. 0: no share, only MaxWaiters.
	MaxWaitersPerClient int `env:"KV_MAX_WAITERS_PER_CLIENT" envDefault:"100"`
}

// DefaultWaitConfig() is WaitConfig with its documented defaults.
func DefaultWaitConfig() WaitConfig { return envdefault.Of[WaitConfig]() }

// Validate rejects bounds that cannot work together.
func (c WaitConfig) Validate() error {
	switch {
	case c.Timeout < 0 || c.Max < 0:
		return errors.New("KV_WAIT_TIMEOUT and KV_WAIT_MAX must not be negative")
	case c.Timeout > c.Max:
		return fmt.Errorf("KV_WAIT_TIMEOUT (%s) exceeds KV_WAIT_MAX (%s)", c.Timeout, c.Max)
	case c.Poll <= 0:
		return errors.New("KV_WAIT_POLL must be positive")
	case c.MaxWaiters < 0 || c.MaxWaitersPerClient < 0:
		return errors.New("KV_MAX_WAITERS and KV_MAX_WAITERS_PER_CLIENT must not be negative")
	}
	return nil
}

// Bound is how long to wait: what the client asked for (nil: Timeout),
// capped by Max.
func (c WaitConfig) Bound(asked *time.Duration) time.Duration {
	if asked == nil {
		return c.Timeout
	}
	return max(0, min(*asked, c.Max))
}

// WaitKind says what a request waits for.
type WaitKind string

const (
	// WaitRead: a read waiting for a version of its key (GetAtLeast).
	WaitRead WaitKind = "read"
	// WaitWrite: a write waiting to be applied (PutApplied, DeleteApplied).
	WaitWrite WaitKind = "write"
)

// WaitKinds lists every kind.
var WaitKinds = []WaitKind{WaitRead, WaitWrite}

// WaitOutcome is how a wait ended. Its String labels
// kvstack_waits_total and the wait's span.
type WaitOutcome int

const (
	// WaitSatisfied: the key reached the version waited for.
	WaitSatisfied WaitOutcome = iota
	// WaitTimedOut: the bound passed first.
	WaitTimedOut
	// WaitClientGone: the request was cancelled first (the client left).
	WaitClientGone
)

// WaitOutcomes lists every outcome.
var WaitOutcomes = []WaitOutcome{WaitSatisfied, WaitTimedOut, WaitClientGone}

func (o WaitOutcome) String() string {
	switch o {
	case WaitSatisfied:
		return "satisfied"
	case WaitTimedOut:
		return "timeout"
	case WaitClientGone:
		return "client_gone"
	}
	return "unknown"
}

// Waiters tells requests that a key's stored version changed: an API
// process has one, fed by the consumers' notifications.
type Waiters interface {
	// Watch registers interest in key. Register before checking the
	// store: news of anything applied after the check then reaches the
	// watch. It fails with an error wrapping ErrTooManyWaiters at the cap.
	// ctx is the request's (its trace), not the watch's lifetime.
	Watch(ctx context.Context, key string, kind WaitKind) (Watch, error)
}

// Watch is one request's interest in one key.
type Watch interface {
	// Changed receives when news came: a newer version of the key was
	// applied, or news may have been lost.
	Changed() <-chan struct{}
	// Seen returns the newest version of the key applied since Watch, as
	// far as the news told (zero when none), and whether news may have
	// been lost since the last call, in which case only the store knows.
	Seen() (newest Version, lost bool)
	// Done ends a wait that ended with o.
	Done(o WaitOutcome)
	// Abandon ends a watch that never became a wait (the write it was for
	// could not be published).
	Abandon()
}

// ErrTooManyWaiters: the process waits for as many requests as it may.
var ErrTooManyWaiters = errors.New("too many requests waiting")

// ErrTooManyClientWaiters: the process waits for as many requests of the
// request's client as one client may. It wraps ErrTooManyWaiters.
var ErrTooManyClientWaiters = fmt.Errorf("%w for this client", ErrTooManyWaiters)

// ErrNotReached: the key had not reached the version asked for when the
// wait's bound passed.
var ErrNotReached = errors.New("version not reached in time")

// NotReachedError is ErrNotReached with the newest version of the key seen
// while waiting (zero when the store holds nothing for the key).
type NotReachedError struct {
	Newest Version
	Waited time.Duration
}

func (e *NotReachedError) Error() string {
	return fmt.Sprintf("%v after %s", ErrNotReached, e.Waited)
}

func (e *NotReachedError) Unwrap() error { return ErrNotReached }

// NotFoundError is ErrNotFound for a key whose last operation was a
// delete: Version is the delete's. (A key never written, or whose
// tombstone was purged, is plain ErrNotFound.)
type NotFoundError struct{ Version Version }

func (e *NotFoundError) Error() string { return "not found (deleted)" }
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// WriteStatus is what a write that waited knows of its fate.
type WriteStatus int

const (
	// Pending: accepted (durable in the broker), not yet applied when the
	// wait ended. It will still be applied.
	Pending WriteStatus = iota
	// Written: the key's stored state is this operation's.
	Written
	// Superseded: the key holds a newer operation's state.
	Superseded
)

func (s WriteStatus) String() string {
	switch s {
	case Pending:
		return "accepted"
	case Written:
		return "applied"
	case Superseded:
		return "superseded"
	}
	return "unknown"
}

// Write is the answer to a write that waited.
type Write struct {
	Op     Op
	Status WriteStatus
	// Stored is the version the key held when the wait ended: Op's when
	// Written, the newer one when Superseded, zero when Pending.
	Stored Version
}

// pollOnly is the Waiters of a service given none: no news ever comes,
// so waits rest on the poll alone.
type pollOnly struct{}

func (pollOnly) Watch(context.Context, string, WaitKind) (Watch, error) { return pollWatch{}, nil }

type pollWatch struct{}

func (pollWatch) Changed() <-chan struct{} { return nil }
func (pollWatch) Seen() (Version, bool)    { return Version{}, false }
func (pollWatch) Done(WaitOutcome)         {}
func (pollWatch) Abandon()                 {}
