package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/telemetry"
)

// Store is where operations become durable: PostgreSQL in production.
type Store interface {
	// ApplyBatch applies ops (distinct keys, sorted by key) in one
	// transaction, last writer wins, and returns one outcome per op.
	// Errors wrap kv.ErrInvalid when an op can never be applied and
	// kv.ErrUnavailable when the store cannot be reached.
	ApplyBatch(ctx context.Context, ops []kv.Op) ([]kv.Outcome, error)
}

// Cache is brought in line after each commit: Redis in production.
type Cache interface {
	// Apply stores each entry unless the cache holds the same or a newer
	// version of its key.
	Apply(ctx context.Context, entries []kv.Entry) error
	// Purge drops every cached key.
	Purge(ctx context.Context) error
}

// Stats counts what the processor did with the messages it was given.
type Stats struct {
	Applied, Duplicate, Stale, DeadLettered, CacheFailures atomic.Int64
}

// Processor turns batches of messages into store and cache updates. It
// implements Handler.
type Processor struct {
	store  Store
	cache  Cache
	limits kv.Limits
	log    zerolog.Logger
	repair *cacheRepair
	now    func() time.Time

	metrics *metrics.Consumer // nil: not measured
	queues  map[kv.Kind]string

	// Stats is safe to read at any time.
	Stats Stats
}

// NewProcessor wires a processor. Entries that could not be written to the
// cache are retried by RunCacheRepair.
func NewProcessor(store Store, cache Cache, limits kv.Limits, log zerolog.Logger) *Processor {
	return &Processor{
		store: store, cache: cache, limits: limits, log: log,
		repair: newCacheRepair(maxPendingRepairs),
		now:    time.Now,
	}
}

// Measure makes the processor record its work in m, labelled with the queue
// each kind of operation comes from.
func (p *Processor) Measure(m *metrics.Consumer, queues map[kv.Kind]string) {
	p.metrics, p.queues = m, queues
}

// Handle decodes the batch, applies the newest operation per key in one
// store transaction, updates the cache and returns the verdicts. A message
// that can never be applied is dead-lettered; a store that cannot be reached
// returns an error and decides nothing, so the caller retries the batch.
func (p *Processor) Handle(ctx context.Context, batch []Message) ([]Verdict, error) {
	start := p.now()
	tr := startBatchTrace(ctx, batch)
	fates, err := p.handle(tr, batch)
	tr.end(fates, err)
	if err != nil {
		p.metrics.Retry() // the runner keeps the batch and calls again
		return nil, err
	}
	p.metrics.Batch(tr.ctx, len(batch), p.now().Sub(start))
	verdicts := make([]Verdict, len(batch))
	for i, f := range fates {
		p.count(f)
		p.metrics.Message(p.queues[batch[i].Kind], string(f))
		if f == fateDeadLettered {
			verdicts[i] = DeadLetter
		}
	}
	return verdicts, nil
}

// fate is what became of one message: the outcome label of
// kvstack_consumer_messages_total, and kvstack.fate on its span.
type fate string

const (
	fateApplied      fate = metrics.Applied
	fateDuplicate    fate = metrics.Duplicate
	fateStale        fate = metrics.Stale
	fateDeadLettered fate = metrics.DeadLettered
)

func (p *Processor) handle(tr *batchTrace, batch []Message) ([]fate, error) {
	fates := make([]fate, len(batch))
	ops := make([]kv.Op, 0, len(batch))
	msgOf := make([]int, 0, len(batch)) // ops[i] came from batch[msgOf[i]]
	for i, m := range batch {
		op, err := kv.DecodeMessage(m.Kind, m.Body, p.limits)
		if err != nil {
			fates[i] = p.deadLetter(m, err)
			continue
		}
		ops = append(ops, op)
		msgOf = append(msgOf, i)
	}
	if len(ops) == 0 {
		return fates, nil
	}

	winners, losers := kv.Winners(ops)
	for _, l := range losers {
		fates[msgOf[l]] = fateStale
	}
	winOps := make([]kv.Op, len(winners))
	winMsgs := make([]int, len(winners)) // winOps[i] came from batch[winMsgs[i]]
	for i, w := range winners {
		winOps[i], winMsgs[i] = ops[w], msgOf[w]
	}

	start := time.Now()
	outcomes, err := p.store.ApplyBatch(tr.ctx, winOps)
	if errors.Is(err, kv.ErrInvalid) {
		outcomes, err = p.applyOneByOne(tr.ctx, winOps)
	}
	tr.shared(winMsgs, postgresCall, start, err)
	if err != nil {
		return nil, fmt.Errorf("apply batch of %d: %w", len(winOps), err)
	}

	entries := make([]kv.Entry, 0, len(winOps))
	cached := make([]int, 0, len(winOps))
	for i, o := range outcomes {
		m := winMsgs[i]
		switch o {
		case kv.Applied, kv.Duplicate:
			// A duplicate may be the redelivery of a batch whose cache
			// update never happened: write it again (the cache's version
			// check makes that harmless).
			entries = append(entries, winOps[i].Entry())
			cached = append(cached, m)
			fates[m] = fateOf(o)
		case kv.Stale:
			fates[m] = fateStale
		case poisoned:
			fates[m] = p.deadLetter(batch[m], fmt.Errorf("store rejected the operation: %w", kv.ErrInvalid))
		}
	}
	p.updateCache(tr, entries, cached)
	p.logBatch(ops)
	now := p.now()
	for i, op := range ops {
		m := batch[msgOf[i]]
		p.metrics.Lag(m.Ctx, p.queues[m.Kind], now.Sub(op.Version.Time))
	}
	return fates, nil
}

func fateOf(o kv.Outcome) fate {
	if o == kv.Duplicate {
		return fateDuplicate
	}
	return fateApplied
}

// poisoned marks, among the outcomes of applyOneByOne, an operation the store
// rejected for good.
const poisoned kv.Outcome = -1

// applyOneByOne finds which operations of a batch the store rejects for
// good, applying each alone. A store that becomes unreachable meanwhile
// fails the whole batch, which is then retried; what was applied is applied
// again harmlessly.
func (p *Processor) applyOneByOne(ctx context.Context, ops []kv.Op) ([]kv.Outcome, error) {
	outcomes := make([]kv.Outcome, len(ops))
	for i := range ops {
		out, err := p.store.ApplyBatch(ctx, ops[i:i+1])
		switch {
		case err == nil:
			outcomes[i] = out[0]
		case errors.Is(err, kv.ErrInvalid):
			outcomes[i] = poisoned
		default:
			return nil, err
		}
	}
	return outcomes, nil
}

func (p *Processor) updateCache(tr *batchTrace, entries []kv.Entry, msgs []int) {
	if len(entries) == 0 {
		return
	}
	start := time.Now()
	err := p.cache.Apply(tr.ctx, entries)
	tr.shared(msgs, redisCall, start, err)
	if err != nil {
		// PostgreSQL holds the truth already; the cache is repaired in the
		// background rather than holding the queue while Redis is away.
		p.Stats.CacheFailures.Add(1)
		p.repair.add(entries)
		p.log.Warn().Err(err).Int("entries", len(entries)).Msg("cache update failed; queued for repair")
	}
}

func (p *Processor) deadLetter(m Message, err error) fate {
	log := telemetry.WithTrace(m.Ctx, p.log)
	log.Warn().Err(err).Str("kind", string(m.Kind)).Int("bytes", len(m.Body)).Msg("message dead-lettered")
	return fateDeadLettered
}

func (p *Processor) count(f fate) {
	switch f {
	case fateApplied:
		p.Stats.Applied.Add(1)
	case fateDuplicate:
		p.Stats.Duplicate.Add(1)
	case fateStale:
		p.Stats.Stale.Add(1)
	case fateDeadLettered:
		p.Stats.DeadLettered.Add(1)
	}
}

func (p *Processor) logBatch(ops []kv.Op) {
	ev := p.log.Debug()
	if !ev.Enabled() {
		return
	}
	var oldest time.Time
	for _, op := range ops {
		if oldest.IsZero() || op.Version.Time.Before(oldest) {
			oldest = op.Version.Time
		}
	}
	ev.Int("ops", len(ops)).
		Dur("max_lag", p.now().Sub(oldest)).Msg("batch applied")
}
