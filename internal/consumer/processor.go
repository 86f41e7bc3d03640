package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
	"github.com/kvstack/kvstack/internal/telemetry"
)

// Store is where operations become durable: PostgreSQL in production.
type Store interface {
	// ApplyBatch applies ops (distinct keys, sorted by key) in one
	// transaction, last writer wins, and returns one outcome per op
	// (Applied, Duplicate or Stale). Errors wrap kv.ErrInvalid when an op
	// can never be applied and kv.ErrUnavailable when the store cannot be
	// reached.
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

// Processor applies batches of messages to the store and the cache. It
// implements Handler.
type Processor struct {
	store  Store
	cache  Cache
	checks Checks
	log    zerolog.Logger
	repair *cacheRepair
}

// Checks are what a message must pass before it is applied.
type Checks struct {
	Limits kv.Limits
	// Keys verify each message's signature; required.
	Keys *msgsig.Keys
	// AcceptUnsigned lets a message without signature headers through
	// (KV_ACCEPT_UNSIGNED_MESSAGES, for an upgrade); OnUnsigned, when not
	// nil, is called for each.
	AcceptUnsigned bool
	OnUnsigned     func(queue string)
	// MaxClockSkew bounds how far past Now a message's timestamp may lie
	// (KV_MAX_CLOCK_SKEW); required. Under last writer wins, a message
	// stamped in the far future would lock its key until then.
	MaxClockSkew time.Duration
	// Now is the reference clock (PostgreSQL's, as clock.Monitor knows
	// it); time.Now when nil.
	Now func() time.Time
}

// Why a message is dead-lettered (Result.Reason), besides the signature's
// reasons (msgsig.ReasonUnsigned, ReasonUnknownKey, ReasonBad).
const (
	ReasonInvalid     = "invalid"          // not a valid message: JSON, fields, limits
	ReasonUnappliable = "unappliable"      // the store refused it for good, or the handler panicked
	ReasonFuture      = "future_timestamp" // stamped more than MaxClockSkew ahead of the reference clock
)

// DeadLetterReasons lists every Result.Reason, for metrics.
var DeadLetterReasons = []string{msgsig.ReasonUnsigned, msgsig.ReasonUnknownKey, msgsig.ReasonBad, ReasonInvalid, ReasonFuture, ReasonUnappliable}

// NewProcessor wires a processor. Entries that could not be written to the
// cache are retried by RunCacheRepair.
func NewProcessor(store Store, cache Cache, checks Checks, log zerolog.Logger) *Processor {
	if checks.Keys == nil || checks.MaxClockSkew <= 0 {
		panic("consumer: NewProcessor without message keys or a bound on timestamps")
	}
	if checks.Now == nil {
		checks.Now = time.Now
	}
	return &Processor{
		store: store, cache: cache, checks: checks, log: log,
		repair: newCacheRepair(maxPendingRepairs),
	}
}

// Handle decodes the batch, applies the newest operation per key in one
// store transaction, and updates the cache. A message that cannot be
// decoded is dead-lettered; an operation the store rejects for good fails
// the batch with kv.ErrInvalid (the Runner then finds it); a store that
// cannot be reached fails it with kv.ErrUnavailable.
func (p *Processor) Handle(ctx context.Context, batch []Message) ([]Result, error) {
	tr := startBatchTrace(ctx, batch)
	results, err := p.handle(tr, batch)
	tr.end(err)
	return results, err
}

func (p *Processor) handle(tr *batchTrace, batch []Message) ([]Result, error) {
	results := make([]Result, len(batch))
	ops := make([]kv.Op, 0, len(batch))
	msgOf := make([]int, 0, len(batch)) // ops[i] came from batch[msgOf[i]]
	for i, m := range batch {
		op, reason, err := p.check(m)
		if err != nil {
			log := telemetry.WithTrace(m.Ctx, p.log)
			log.Warn().Err(err).Str("queue", m.Queue).Int("bytes", len(m.Body)).Str("reason", reason).
				Msg("message refused; dead-lettering it")
			results[i].Outcome, results[i].Reason = kv.DeadLettered, reason
			continue
		}
		results[i].Op = op
		ops = append(ops, op)
		msgOf = append(msgOf, i)
	}
	if len(ops) == 0 {
		return results, nil
	}

	winners, losers := kv.Winners(ops)
	for _, l := range losers {
		results[msgOf[l]].Outcome = kv.Stale
	}
	winOps := make([]kv.Op, len(winners))
	winMsgs := make([]int, len(winners)) // winOps[i] came from batch[winMsgs[i]]
	for i, w := range winners {
		winOps[i], winMsgs[i] = ops[w], msgOf[w]
	}

	start := time.Now()
	outcomes, err := p.store.ApplyBatch(tr.ctx, winOps)
	tr.shared(winMsgs, postgresCall, start, err)
	if err != nil {
		return nil, fmt.Errorf("apply batch of %d: %w", len(winOps), err)
	}

	entries := make([]kv.Entry, 0, len(winOps))
	cached := make([]int, 0, len(winOps))
	for i, o := range outcomes {
		m := winMsgs[i]
		results[m].Outcome = o
		if o == kv.Applied || o == kv.Duplicate {
			// A duplicate may be the redelivery of a batch whose cache
			// update never happened: write it again (the cache's version
			// check makes that harmless).
			entries = append(entries, winOps[i].Entry())
			cached = append(cached, m)
		}
	}
	p.updateCache(tr, entries, cached)
	return results, nil
}

// check verifies a message's signature, decodes it, and bounds its
// timestamp; an error comes with the reason to dead-letter the message.
func (p *Processor) check(m Message) (kv.Op, string, error) {
	unsigned := m.KeyID == "" && m.Signature == ""
	if !unsigned || !p.checks.AcceptUnsigned {
		if err := p.checks.Keys.Verify(string(m.Kind), m.WrittenBy, m.Body, m.KeyID, m.Signature); err != nil {
			var serr *msgsig.Error
			errors.As(err, &serr)
			return kv.Op{}, serr.Reason, err
		}
	} else if p.checks.OnUnsigned != nil {
		p.checks.OnUnsigned(m.Queue)
	}
	op, err := kv.DecodeMessage(m.Kind, m.Body, p.checks.Limits)
	if err == nil {
		op.WrittenBy = m.WrittenBy
		err = kv.ValidateWriter(op.WrittenBy)
	}
	if err != nil {
		return kv.Op{}, ReasonInvalid, err
	}
	if limit := p.checks.Now().Add(p.checks.MaxClockSkew); op.Version.Time.After(limit) {
		return kv.Op{}, ReasonFuture, fmt.Errorf("timestamp %s is more than KV_MAX_CLOCK_SKEW (%s) ahead of PostgreSQL's clock (%s)",
			op.Version.Time.Format(kv.TimestampLayout), p.checks.MaxClockSkew, limit.Add(-p.checks.MaxClockSkew).UTC().Format(kv.TimestampLayout))
	}
	return op, "", nil
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
		p.repair.add(entries)
		p.log.Warn().Err(err).Int("entries", len(entries)).Msg("cache update failed; queued for repair")
	}
}
