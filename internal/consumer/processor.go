package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
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

// Handle decodes the batch, applies the newest operation per key in one
// store transaction, updates the cache and returns the verdicts. A message
// that can never be applied is dead-lettered; a store that cannot be reached
// returns an error and decides nothing, so the caller retries the batch.
func (p *Processor) Handle(ctx context.Context, batch []Message) ([]Verdict, error) {
	verdicts := make([]Verdict, len(batch))
	ops := make([]kv.Op, 0, len(batch))
	msgOf := make([]int, 0, len(batch)) // ops[i] came from batch[msgOf[i]]
	for i, m := range batch {
		op, err := kv.DecodeMessage(m.Kind, m.Body, p.limits)
		if err != nil {
			p.deadLetter(verdicts, i, err)
			continue
		}
		ops = append(ops, op)
		msgOf = append(msgOf, i)
	}
	if len(ops) == 0 {
		return verdicts, nil
	}

	winners, losers := kv.Winners(ops)
	p.Stats.Stale.Add(int64(len(losers)))
	winOps := make([]kv.Op, len(winners))
	for i, w := range winners {
		winOps[i] = ops[w]
	}

	outcomes, err := p.store.ApplyBatch(ctx, winOps)
	if errors.Is(err, kv.ErrInvalid) {
		outcomes, err = p.applyOneByOne(ctx, winOps)
	}
	if err != nil {
		return nil, fmt.Errorf("apply batch of %d: %w", len(winOps), err)
	}

	entries := make([]kv.Entry, 0, len(winOps))
	for i, o := range outcomes {
		switch o {
		case kv.Applied, kv.Duplicate:
			// A duplicate may be the redelivery of a batch whose cache
			// update never happened: write it again (the cache's version
			// check makes that harmless).
			entries = append(entries, winOps[i].Entry())
			p.count(o)
		case kv.Stale:
			p.Stats.Stale.Add(1)
		case poisoned:
			p.deadLetter(verdicts, msgOf[winners[i]], fmt.Errorf("store rejected the operation: %w", kv.ErrInvalid))
		}
	}
	p.updateCache(ctx, entries)
	p.logBatch(ops, outcomes)
	return verdicts, nil
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

func (p *Processor) updateCache(ctx context.Context, entries []kv.Entry) {
	if len(entries) == 0 {
		return
	}
	if err := p.cache.Apply(ctx, entries); err != nil {
		// PostgreSQL holds the truth already; the cache is repaired in the
		// background rather than holding the queue while Redis is away.
		p.Stats.CacheFailures.Add(1)
		p.repair.add(entries)
		p.log.Warn().Err(err).Int("entries", len(entries)).Msg("cache update failed; queued for repair")
	}
}

func (p *Processor) deadLetter(verdicts []Verdict, i int, err error) {
	verdicts[i] = DeadLetter
	p.Stats.DeadLettered.Add(1)
	p.log.Warn().Err(err).Msg("message dead-lettered")
}

func (p *Processor) count(o kv.Outcome) {
	switch o {
	case kv.Applied:
		p.Stats.Applied.Add(1)
	case kv.Duplicate:
		p.Stats.Duplicate.Add(1)
	}
}

func (p *Processor) logBatch(ops []kv.Op, outcomes []kv.Outcome) {
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
	ev.Int("ops", len(ops)).Int("keys", len(outcomes)).
		Dur("max_lag", p.now().Sub(oldest)).Msg("batch applied")
}
