package kv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Spans are made where docs/ARCHITECTURE.md says ("Where spans and metrics
// are made"); here, the wait applied span, the one stretch of a request that
// no call covers; the service makes no other.
const tracerName = "github.com/kvstack/kvstack/internal/kv"

// GetAtLeast is Get for a state of key at least as new as min (a version
// the client was given): monotonic reads and reading one's own writes. It
// reads the cache, skipping an entry older than min, then the store; when
// neither has reached min, it waits for the key to be applied that far,
// for at most timeout. Then it fails with a *NotReachedError naming the
// newest version seen. A client that leaves ends the wait (ctx's error).
func (s *Service) GetAtLeast(ctx context.Context, key string, min Version, timeout time.Duration) (Read, error) {
	if err := s.limits.ValidateKey(key); err != nil {
		return Read{}, err
	}
	e, err := s.cache.Get(ctx, key)
	lookup := LookupOf(err)
	switch {
	case lookup == Hit && !min.Newer(e.Version):
		return answer(e, SourceRedis)
	case lookup == CacheFailed:
		s.cacheFailed(err)
	}
	cacheUp := lookup != CacheFailed

	// Not singleflight's shared load: one that started before min was
	// applied could answer with an older row.
	e, found, err := s.storeGet(ctx, key)
	if err != nil {
		return Read{}, fmt.Errorf("get: %w", err)
	}
	if found && !min.Newer(e.Version) {
		return s.served(ctx, e, cacheUp)
	}
	return s.waitRead(ctx, key, min, e.Version, timeout, cacheUp)
}

func (s *Service) waitRead(ctx context.Context, key string, min, newest Version, timeout time.Duration, cacheUp bool) (Read, error) {
	start := time.Now()
	ctx, span := otel.Tracer(tracerName).Start(ctx, "wait applied", trace.WithAttributes(attrKind.String(string(WaitRead))))
	defer span.End()
	w, err := s.waiters.Watch(ctx, key, WaitRead)
	if err != nil {
		span.SetAttributes(attrOutcome.String("rejected"))
		return Read{}, fmt.Errorf("get: %w: %w", err, ErrUnavailable)
	}
	var (
		found bool
		e     Entry
	)
	check := func() bool {
		got, ok, err := s.storeGet(ctx, key)
		if err != nil {
			s.log.Debug().Err(err).Msg("wait: store read failed; waiting on")
			return false
		}
		if ok && got.Version.Newer(newest) {
			newest = got.Version
		}
		e, found = got, ok
		return ok && !min.Newer(got.Version)
	}
	// News of min (or newer) is when the store has it: read it then.
	news := func(v Version) bool { return !min.Newer(v) && check() }
	// Checked once more after Watch: what was applied between the read
	// above and Watch sent its news to no one.
	o := s.await(ctx, span, w, timeout, check, news, check)
	w.Done(o)
	switch o {
	case WaitSatisfied:
		return s.served(ctx, e, found && cacheUp)
	case WaitClientGone:
		return Read{}, fmt.Errorf("get: %w", ctx.Err())
	}
	return Read{}, fmt.Errorf("get: %w", &NotReachedError{Newest: newest, Waited: time.Since(start)})
}

// PutApplied is Put, then a wait of at most timeout for the write to be
// applied and visible: Written when the key's state is this write's,
// Superseded when a newer operation's, Pending when the bound passed or the
// client left first (the write is durable all the same, and will be
// applied). Beyond the waiters' cap it fails with ErrTooManyWaiters,
// publishing nothing.
//
// Visible means that every plain Get started after the answer returns this
// state or a newer one, whichever path it takes: before answering, the
// waiter brings the cache to the state the store reached (makeVisible), so that
// neither an entry the consumer has not updated yet nor a reader's fill of
// a row it read before the commit can be found there afterwards.
func (s *Service) PutApplied(ctx context.Context, key, value string, timeout time.Duration) (Write, error) {
	return s.acceptApplied(ctx, Op{Kind: KindPut, Key: key, Value: value}, timeout)
}

// DeleteApplied is Delete with a wait, as PutApplied.
func (s *Service) DeleteApplied(ctx context.Context, key string, timeout time.Duration) (Write, error) {
	return s.acceptApplied(ctx, Op{Kind: KindDelete, Key: key}, timeout)
}

func (s *Service) acceptApplied(ctx context.Context, op Op, timeout time.Duration) (Write, error) {
	op.WrittenBy = WriterOf(ctx)
	if err := s.limits.ValidateOp(op); err != nil {
		return Write{}, err
	}
	// Watched before the publish, so that the news of its apply cannot
	// come before anyone listens, and nothing is published that could not
	// be waited for.
	w, err := s.waiters.Watch(ctx, op.Key, WaitWrite)
	if err != nil {
		return Write{}, fmt.Errorf("%s: %w: %w", op.Kind, err, ErrUnavailable)
	}
	op, err = s.publish(ctx, op)
	if err != nil {
		w.Abandon()
		return Write{}, err
	}
	ctx, span := otel.Tracer(tracerName).Start(ctx, "wait applied", trace.WithAttributes(attrKind.String(string(WaitWrite))))
	defer span.End()
	res := Write{Op: op}
	// settle ends the wait on e, a state the store committed at least as
	// new as op, once the cache holds e or newer.
	settle := func(e Entry) bool {
		if !s.makeVisible(ctx, e) {
			return false
		}
		res.Stored, res.Status = e.Version, Superseded
		if e.Version == op.Version {
			res.Status = Written
		}
		return true
	}
	check := func() bool {
		e, found, err := s.storeGet(ctx, op.Key)
		if err != nil {
			s.log.Debug().Err(err).Msg("wait: store read failed; waiting on")
			return false
		}
		return found && !op.Version.Newer(e.Version) && settle(e)
	}
	news := func(v Version) bool {
		switch {
		case op.Version.Newer(v):
			return false
		case v == op.Version:
			return settle(op.Entry()) // committed: its state is op's own
		}
		return check() // a newer op's, whose state only the store knows
	}
	o := s.await(ctx, span, w, timeout, nil, news, check)
	w.Done(o)
	span.SetAttributes(attrStatus.String(res.Status.String()))
	return res, nil
}

// makeVisible makes e, a state the store committed, the oldest that any read
// can find from now on: PostgreSQL holds e or newer, and the cache is
// brought to e by a compare-and-set that never moves it backwards (a no-op
// when the consumer got there first), so that a reader's late fill of an
// older row is refused. When the cache cannot be written, it reports false:
// the wait goes on (and ends Pending at its bound), since a cache that
// comes back could still serve the older state.
func (s *Service) makeVisible(ctx context.Context, e Entry) bool {
	if _, err := s.cache.Fill(ctx, e); err != nil {
		s.log.Debug().Err(err).Msg("wait: cache fill failed; waiting on")
		return false
	}
	return true
}

var (
	attrKind    = attribute.Key("kvstack.wait.kind")
	attrOutcome = attribute.Key("kvstack.wait.outcome")
	attrStatus  = attribute.Key("kvstack.write.status")
	attrPolls   = attribute.Key("kvstack.wait.store_reads")
	attrNews    = attribute.Key("kvstack.wait.notifications")
)

// await waits until the key is where the caller wants it: first (when
// given) says so at once, news says so from the newest version notified,
// check from the store, read when news may have been lost and every Poll.
// It ends at timeout (or EndWaits, which stands for it), or when ctx ends
// (the client left).
func (s *Service) await(ctx context.Context, span trace.Span, w Watch, timeout time.Duration,
	first func() bool, news func(Version) bool, check func() bool) WaitOutcome {
	var reads, notes int
	o := func() WaitOutcome {
		if first != nil {
			reads++
			if first() {
				return WaitSatisfied
			}
		}
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		poll := time.NewTicker(s.wait.Poll)
		defer poll.Stop()
		for {
			var done bool
			select {
			case <-ctx.Done():
				return WaitClientGone
			case <-deadline.C:
				return WaitTimedOut
			case <-s.waitsEnded:
				return WaitTimedOut
			case <-poll.C:
				reads++
				done = check()
			case <-w.Changed():
				notes++
				newest, lost := w.Seen()
				if lost {
					reads++
					done = check()
				} else {
					done = news(newest)
				}
			}
			if done {
				return WaitSatisfied
			}
		}
	}()
	span.SetAttributes(attrOutcome.String(o.String()), attrPolls.Int(reads), attrNews.Int(notes))
	return o
}

// EndWaits ends every wait, now and from now on, as if its bound had
// passed: a read that waits answers with the newest version it saw
// (ErrNotReached), a write that waits as accepted (Pending; it is
// durable). A process that drains calls it before its server stops, so
// that no wait holds the stop for its whole bound and none is cut.
func (s *Service) EndWaits() {
	s.endWaits.Do(func() { close(s.waitsEnded) })
}

// storeGet reads key's stored entry, tombstones included; found is false
// when the store holds nothing for it.
func (s *Service) storeGet(ctx context.Context, key string) (e Entry, found bool, err error) {
	e, err = s.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return Entry{Key: key}, false, nil
	}
	return e, err == nil, err
}

// served answers with e, read from the store, and fills the cache with it
// (a compare-and-set: it never moves the cache backwards).
func (s *Service) served(ctx context.Context, e Entry, fill bool) (Read, error) {
	if fill {
		if _, err := s.cache.Fill(ctx, e); err != nil {
			s.log.Warn().Err(err).Msg("cache fill failed")
		}
	}
	return answer(e, SourcePostgres)
}
