package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/telemetry"
)

// errHandlerBug marks a handler that panicked or broke its contract (a
// wrong number of results): retrying the same input would do the same
// again.
var errHandlerBug = errors.New("handler bug")

// handle gets the batch's results. A dependency that is down keeps the
// batch: neither ack nor requeue (a requeue would spin, and count towards
// dead-lettering); wait, and call again with the same batch, until it
// succeeds, ctx is cancelled or the session is lost (the broker then
// delivers everything again, and the next session takes over).
//
// A message that can never be applied (the handler says kv.ErrInvalid) or
// that the handler cannot cope with (a panic) must neither kill the process
// nor block the queue: the batch is handled again one message at a time,
// so that only the messages that fail alone are dead-lettered and the rest
// goes through. This is the one place that policy lives.
func (r *Runner) handle(ctx, work context.Context, s Session, msgs []Message) ([]Result, error) {
	b := r.newBackoff()
	for attempt := 1; ; attempt++ {
		results, err := r.isolating(work, msgs)
		if err == nil {
			return results, nil
		}
		if ctx.Err() != nil || work.Err() != nil {
			return nil, fmt.Errorf("handle batch of %d, given up while stopping: %w", len(msgs), err)
		}
		wait := b.NextBackOff()
		r.log.Warn().Err(err).Int("messages", len(msgs)).Int("attempt", attempt).Dur("retry_in", wait).
			Msg("handler failed; retrying the same batch")
		if !sleep(ctx.Done(), s.Done(), wait) {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("handle batch of %d: %w (%w)", len(msgs), err, ctx.Err())
			}
			return nil, fmt.Errorf("handle batch of %d: %w; session lost: %w", len(msgs), err, s.Err())
		}
	}
}

// isolating calls the handler on the batch and, if some message cannot be
// applied, on each message alone. Handling again what the first call may
// have applied already is harmless: applying is idempotent.
func (r *Runner) isolating(ctx context.Context, msgs []Message) ([]Result, error) {
	results, err := r.call(ctx, msgs)
	if !unappliable(err) {
		return results, err
	}
	if len(msgs) == 1 {
		return []Result{r.deadLetter(msgs[0], err)}, nil
	}
	r.log.Warn().Err(err).Int("messages", len(msgs)).Msg("batch cannot be applied whole; handling its messages one at a time")
	results = make([]Result, len(msgs))
	for i := range msgs {
		res, err := r.call(ctx, msgs[i:i+1])
		switch {
		case unappliable(err):
			results[i] = r.deadLetter(msgs[i], err)
		case err != nil:
			return nil, err
		default:
			results[i] = res[0]
		}
	}
	return results, nil
}

// unappliable reports whether err says that retrying the same messages
// would fail the same way.
func unappliable(err error) bool {
	return errors.Is(err, kv.ErrInvalid) || errors.Is(err, errHandlerBug)
}

func (r *Runner) deadLetter(m Message, err error) Result {
	log := telemetry.WithTrace(m.Ctx, r.log)
	log.Error().Err(err).Str("queue", m.Queue).Int("bytes", len(m.Body)).Str("reason", ReasonUnappliable).
		Msg("message cannot be applied; dead-lettering it")
	return Result{Outcome: kv.DeadLettered, Reason: ReasonUnappliable}
}

// call runs the handler once, turning a panic or a broken contract into
// errHandlerBug.
func (r *Runner) call(ctx context.Context, msgs []Message) (results []Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			results = nil
			err = fmt.Errorf("%w: panic: %v", errHandlerBug, v)
			r.log.Error().Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).Msg("handler panicked")
		}
	}()
	results, err = r.h.Handle(ctx, msgs)
	if err == nil && len(results) != len(msgs) {
		return nil, fmt.Errorf("%w: %d results for %d messages", errHandlerBug, len(results), len(msgs))
	}
	return results, err
}
