package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/kvstack/kvstack/internal/consumer"
)

// errHandlerBug marks a handler that panicked or broke its contract (wrong
// number of verdicts, unknown verdict): retrying the same input would do the
// same again.
var errHandlerBug = errors.New("handler bug")

// handle gets the batch's verdicts. A handler error means a dependency is
// down: keep the batch, neither ack nor nack (a requeue would spin, and
// count towards dead-lettering), wait, and call again with the same batch —
// until it succeeds, ctx is cancelled, or the channel dies (the broker then
// requeues everything and the reconnect path takes over).
//
// A handler bug must neither kill the process nor block the queue: the
// batch is handled again one message at a time, so that only the messages
// that fail alone are dead-lettered and the innocent rest of the batch goes
// through.
func (c *Consumer) handle(ctx, work context.Context, l *link, msgs []consumer.Message) ([]consumer.Verdict, error) {
	b := newBackoff(c.retryMin, c.retryMax)
	for attempt := 1; ; attempt++ {
		verdicts, err := c.call(work, msgs)
		if errors.Is(err, errHandlerBug) {
			verdicts, err = c.isolate(work, msgs, err)
		}
		if err == nil {
			return verdicts, nil
		}
		if ctx.Err() != nil || work.Err() != nil {
			return nil, fmt.Errorf("handle batch of %d, given up while stopping: %w", len(msgs), err)
		}
		wait := b.next()
		c.log.Warn().Err(err).Int("messages", len(msgs)).Int("attempt", attempt).Dur("retry_in", wait).
			Msg("handler failed; retrying the same batch")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("handle batch of %d: %w (%w)", len(msgs), err, ctx.Err())
		case e := <-l.closed:
			t.Stop()
			return nil, fmt.Errorf("handle batch of %d: %w; %w", len(msgs), err, closedErr(e))
		}
	}
}

// isolate handles each message alone after the batch hit a handler bug.
// A message that fails alone with a bug is dead-lettered; an ordinary error
// fails the whole batch, to be retried. Re-handling messages that the
// panicking call may already have applied is harmless: apply is idempotent.
func (c *Consumer) isolate(work context.Context, msgs []consumer.Message, cause error) ([]consumer.Verdict, error) {
	if len(msgs) == 1 {
		c.log.Error().Err(cause).Str("kind", string(msgs[0].Kind)).Int("bytes", len(msgs[0].Body)).
			Msg("handler bug on a single message; dead-lettering it")
		return []consumer.Verdict{consumer.DeadLetter}, nil
	}
	c.log.Error().Err(cause).Int("messages", len(msgs)).Msg("handler bug; handling the batch one message at a time")
	verdicts := make([]consumer.Verdict, len(msgs))
	for i := range msgs {
		v, err := c.call(work, msgs[i:i+1])
		switch {
		case errors.Is(err, errHandlerBug):
			c.log.Error().Err(err).Str("kind", string(msgs[i].Kind)).Int("bytes", len(msgs[i].Body)).
				Msg("handler bug on a single message; dead-lettering it")
			verdicts[i] = consumer.DeadLetter
		case err != nil:
			return nil, err
		default:
			verdicts[i] = v[0]
		}
	}
	return verdicts, nil
}

// call runs the handler once, turning a panic or a broken contract into
// errHandlerBug.
func (c *Consumer) call(ctx context.Context, msgs []consumer.Message) (verdicts []consumer.Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			verdicts = nil
			err = fmt.Errorf("%w: panic: %v", errHandlerBug, r)
			c.log.Error().Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("handler panicked")
		}
	}()
	verdicts, err = c.h.Handle(ctx, msgs)
	if err != nil {
		return nil, err
	}
	if len(verdicts) != len(msgs) {
		return nil, fmt.Errorf("%w: %d verdicts for %d messages", errHandlerBug, len(verdicts), len(msgs))
	}
	for _, v := range verdicts {
		if v != consumer.Ack && v != consumer.DeadLetter {
			return nil, fmt.Errorf("%w: unknown verdict %d", errHandlerBug, v)
		}
	}
	return verdicts, nil
}
