package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/telemetry"
)

// Runner consumes from a Source until stopped: it batches deliveries, has
// the Handler apply each batch, and settles it.
type Runner struct {
	src Source
	h   Handler
	cfg Config
	log zerolog.Logger

	// waits between handler retries, and between reconnects
	retryMin, retryMax time.Duration
}

// NewRunner builds a runner; Run starts it.
func NewRunner(src Source, h Handler, cfg Config, log zerolog.Logger) *Runner {
	return &Runner{
		src: src, h: h, cfg: cfg,
		log:      log.With().Str("component", "consumer").Logger(),
		retryMin: 100 * time.Millisecond,
		retryMax: 5 * time.Second,
	}
}

func (r *Runner) newBackoff() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: r.retryMin, MaxInterval: r.retryMax, Multiplier: 2, RandomizationFactor: 0.2}
	b.Reset()
	return b
}

// Run consumes until ctx is cancelled, opening a new session (with
// backoff) whenever one is lost. On cancel it stops taking deliveries,
// finishes and settles the batch in hand within ShutdownGrace, and returns
// nil. It returns an error only for an invalid configuration.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.cfg.Validate(); err != nil {
		return err
	}
	b := r.newBackoff()
	for {
		err := r.session(ctx, b)
		if ctx.Err() != nil {
			r.log.Info().Msg("consumer stopped")
			return nil
		}
		wait := b.NextBackOff()
		r.log.Warn().Err(err).Dur("retry_in", wait).Msg("consumer session lost; reconnecting")
		if !sleep(ctx.Done(), nil, wait) {
			return nil
		}
	}
}

// session consumes from one session until it is lost or ctx is done.
func (r *Runner) session(ctx context.Context, b *backoff.ExponentialBackOff) error {
	s, err := r.src.Open(ctx)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer s.Close()
	b.Reset()

	// Handling runs under work, which outlives ctx by ShutdownGrace so that
	// the batch in hand can finish, and ends with the session.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		sleep(work.Done(), nil, r.cfg.ShutdownGrace)
		cancelWork()
	})
	defer stopGrace()

	for {
		b, err := r.collect(ctx, s)
		if err != nil {
			return err
		}
		stopping := ctx.Err() != nil
		if stopping {
			s.Stop()
		}
		if len(b.deliveries) > 0 {
			if err := r.process(ctx, work, s, b); err != nil {
				return err
			}
		}
		if stopping {
			return nil
		}
	}
}

// collect waits for a first delivery, then takes more until the batch is
// full or BatchWait has passed since the first. It returns what it has when
// ctx is cancelled, and an error when the session is lost.
func (r *Runner) collect(ctx context.Context, s Session) (*batch, error) {
	b := &batch{}
	var deadline <-chan time.Time
	for len(b.deliveries) < r.cfg.BatchSize {
		if ctx.Err() != nil {
			return b, nil // stopping: take nothing more
		}
		select {
		case d := <-s.Deliveries():
			b.add(d)
		case <-deadline:
			return b, nil
		case <-ctx.Done():
			return b, nil
		case <-s.Done():
			b.end(nil, s.Err())
			return nil, s.Err()
		}
		if deadline == nil {
			t := time.NewTimer(r.cfg.BatchWait)
			defer t.Stop()
			deadline = t.C
		}
	}
	return b, nil
}

// process handles and settles one batch, then ends its spans. An error
// leaves it unsettled: the broker delivers it again in the next session.
func (r *Runner) process(ctx, work context.Context, s Session, b *batch) error {
	results, err := r.handle(ctx, work, s, b.msgs)
	if err == nil {
		err = s.Settle(b.deliveries, outcomes(results))
	}
	b.end(results, err)
	return err
}

func outcomes(results []Result) []kv.Outcome {
	out := make([]kv.Outcome, len(results))
	for i, res := range results {
		out[i] = res.Outcome
	}
	return out
}

// sleep waits d, or less if done or lost closes first; it reports whether
// it slept the whole time.
func sleep(done, lost <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	case <-lost:
		return false
	}
}

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
