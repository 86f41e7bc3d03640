package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/notify"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/redis"
)

// Measuring is done one way: a decorator that holds the adapter in a field
// and implements, method by method, everything the processes call on it,
// timing and classifying each call. The processes only ever see the
// decorators, so a call that goes unmeasured cannot be added by accident: a
// new adapter method is out of reach until its decorator method exists.
// The adapters, the domain and the consumer know nothing of metrics. (Spans
// have a rule of their own: docs/ARCHITECTURE.md, "Where spans and metrics
// are made".)

// data is a process's store and cache, measured.
type data struct {
	store measuredStore
	cache measuredCache
	close func()
}

// counts is what a process counts beyond the latency and errors of every
// call: the API its reads' cache hits, misses and fills, the consumer the
// tombstones it purges. Either may be nil.
type counts struct {
	reads  *metrics.Cache
	purged *metrics.Consumer
}

// openData opens PostgreSQL, which must answer, and a Redis client, which
// need not (reads degrade to PostgreSQL until it does), and exports their
// pools' statistics and call latencies on reg; the cache's purges of
// unmarked shards are logged on log and counted (reportPurges).
func openData(ctx context.Context, pg postgres.Config, rc redis.Config, reg *prometheus.Registry, c counts, log zerolog.Logger) (data, error) {
	pool, err := postgres.Open(ctx, pg)
	if err != nil {
		return data{}, fmt.Errorf("postgres: %w", err)
	}
	onShardPurge := reportPurges(metrics.NewShardPurges(reg), log)
	rdb, err := redis.NewClient(rc, onShardPurge)
	if err != nil {
		pool.Close()
		return data{}, fmt.Errorf("redis: %w", err)
	}
	metrics.RegisterPGXPool(reg, pool)
	metrics.RegisterRedisPool(reg, rdb)
	dep := metrics.NewDependency(reg, measuredOps)
	return data{
		store: measuredStore{store: postgres.NewStore(pool), dep: dep, purged: c.purged},
		cache: measuredCache{cache: redis.NewCache(rdb, rc, onShardPurge), dep: dep, reads: c.reads},
		close: func() { _ = rdb.Close(); pool.Close() },
	}, nil
}

// measuredOps is every operation the decorators below time, by dependency.
var measuredOps = map[string][]string{
	metrics.Postgres: {"get", "list", "apply_batch", "purge_tombstones", "ping", "token_key"},
	metrics.Redis:    {"get", "fill", "apply", "purge", "check_masters", "ping"},
}

// measuredStore times every PostgreSQL call.
type measuredStore struct {
	store *postgres.Store
	dep   *metrics.Dependency
	// purged counts the tombstones PurgeTombstones deletes (the consumer's;
	// nil in the API, which never purges).
	purged *metrics.Consumer
}

func (s measuredStore) Get(ctx context.Context, key string) (kv.Entry, error) {
	start := time.Now()
	e, err := s.store.Get(ctx, key)
	s.dep.Observe(ctx, metrics.Postgres, "get", start, ignore(err, kv.ErrNotFound))
	return e, err
}

func (s measuredStore) List(ctx context.Context, prefix, after string, limit int) ([]kv.Entry, error) {
	start := time.Now()
	es, err := s.store.List(ctx, prefix, after, limit)
	s.dep.Observe(ctx, metrics.Postgres, "list", start, err)
	return es, err
}

func (s measuredStore) ApplyBatch(ctx context.Context, ops []kv.Op) ([]kv.Outcome, error) {
	start := time.Now()
	out, err := s.store.ApplyBatch(ctx, ops)
	s.dep.Observe(ctx, metrics.Postgres, "apply_batch", start, err)
	return out, err
}

func (s measuredStore) PurgeTombstones(ctx context.Context, olderThan time.Time) (int64, error) {
	start := time.Now()
	n, err := s.store.PurgeTombstones(ctx, olderThan)
	s.dep.Observe(ctx, metrics.Postgres, "purge_tombstones", start, err)
	s.purged.Purged(n)
	return n, err
}

func (s measuredStore) TokenKey(ctx context.Context) ([]byte, error) {
	start := time.Now()
	key, err := s.store.TokenKey(ctx)
	s.dep.Observe(ctx, metrics.Postgres, "token_key", start, err)
	return key, err
}

func (s measuredStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.store.Ping(ctx)
	s.dep.Observe(ctx, metrics.Postgres, "ping", start, err)
	return err
}

// measuredCache times every Redis call and, on the read path, counts the
// cache's hits, misses and fills (reads is nil in the consumer).
type measuredCache struct {
	cache *redis.Cache
	dep   *metrics.Dependency
	reads *metrics.Cache
}

func (c measuredCache) Get(ctx context.Context, key string) (kv.Entry, error) {
	start := time.Now()
	e, err := c.cache.Get(ctx, key)
	lookup := kv.LookupOf(err)
	c.dep.Observe(ctx, metrics.Redis, "get", start, failed(lookup, err))
	c.reads.Lookup(lookup)
	return e, err
}

func (c measuredCache) Fill(ctx context.Context, e kv.Entry) (bool, error) {
	start := time.Now()
	stored, err := c.cache.Fill(ctx, e)
	c.dep.Observe(ctx, metrics.Redis, "fill", start, err)
	switch {
	case err != nil:
		c.reads.Fill(metrics.FillError)
	case stored:
		c.reads.Fill(metrics.FillStored)
	default:
		c.reads.Fill(metrics.FillStale)
	}
	return stored, err
}

func (c measuredCache) Apply(ctx context.Context, entries []kv.Entry) error {
	start := time.Now()
	err := c.cache.Apply(ctx, entries)
	c.dep.Observe(ctx, metrics.Redis, "apply", start, err)
	return err
}

func (c measuredCache) Purge(ctx context.Context) error {
	start := time.Now()
	err := c.cache.Purge(ctx)
	c.dep.Observe(ctx, metrics.Redis, "purge", start, err)
	return err
}

func (c measuredCache) CheckMasters(ctx context.Context) ([]redis.MasterChange, error) {
	start := time.Now()
	changes, err := c.cache.CheckMasters(ctx)
	c.dep.Observe(ctx, metrics.Redis, "check_masters", start, err)
	return changes, err
}

func (c measuredCache) Ping(ctx context.Context) error {
	start := time.Now()
	err := c.cache.Ping(ctx)
	c.dep.Observe(ctx, metrics.Redis, "ping", start, err)
	return err
}

// measuredPublisher counts publishes by outcome and times them to the
// confirm.
type measuredPublisher struct {
	pub  *rabbitmq.Publisher
	m    *metrics.Publish
	topo rabbitmq.Topology // labels each publish with its queue
}

func (p measuredPublisher) Publish(ctx context.Context, op kv.Op) error {
	start := time.Now()
	err := p.pub.Publish(ctx, op)
	queue, kindErr := p.topo.QueueOf(op.Kind)
	if kindErr != nil {
		return err // an invalid kind never reaches a queue
	}
	p.m.Observe(ctx, queue, publishOutcome(err), time.Since(start))
	return err
}

// Ready reads the publisher's connection state; it makes no call to the
// broker, so there is nothing to time.
func (p measuredPublisher) Ready(ctx context.Context) error { return p.pub.Ready(ctx) }

func publishOutcome(err error) string {
	switch {
	case err == nil:
		return metrics.Confirmed
	case errors.Is(err, rabbitmq.ErrNacked):
		return metrics.Nacked
	case errors.Is(err, rabbitmq.ErrTimeout):
		return metrics.Timeout
	}
	return metrics.Unavailable
}

// measuredHandler counts what became of each message, times each batch,
// records each operation's end-to-end lag (accepted by the API to applied),
// and counts the batches that a dependency failed (the runner retries them).
type measuredHandler struct {
	h consumer.Handler
	m *metrics.Consumer
}

func (h measuredHandler) Handle(ctx context.Context, batch []consumer.Message) ([]consumer.Result, error) {
	start := time.Now()
	results, err := h.h.Handle(ctx, batch)
	switch {
	case errors.Is(err, kv.ErrInvalid):
		return results, err // the runner isolates the culprit; each call then counts
	case err != nil:
		h.m.Retry()
		return results, err
	}
	now := time.Now()
	h.m.Batch(batch[0].Ctx, len(batch), now.Sub(start))
	for i, res := range results {
		m := batch[i]
		h.m.Message(m.Queue, res.Outcome)
		if res.Reason != "" {
			h.m.DeadLettered(m.Queue, res.Reason)
		}
		if !res.Op.Version.Time.IsZero() {
			h.m.Lag(m.Ctx, m.Queue, now.Sub(res.Op.Version.Time))
		}
	}
	return results, nil
}

// measuredWaiters counts the waits by kind and outcome, and times each
// from its Watch to its end; a watch refused at the cap is counted as
// rejected.
type measuredWaiters struct {
	reg *notify.Registry
	m   *metrics.Wait
}

func (w measuredWaiters) Watch(ctx context.Context, key string, kind kv.WaitKind) (kv.Watch, error) {
	watch, err := w.reg.Watch(ctx, key, kind)
	if err != nil {
		w.m.Rejected(kind)
		return nil, err
	}
	return &measuredWatch{Watch: watch, ctx: ctx, kind: kind, start: time.Now(), m: w.m}, nil
}

type measuredWatch struct {
	kv.Watch
	ctx   context.Context
	kind  kv.WaitKind
	start time.Time
	m     *metrics.Wait
}

func (w *measuredWatch) Done(o kv.WaitOutcome) {
	w.Watch.Done(o)
	w.m.Waited(w.ctx, w.kind, o, time.Since(w.start))
}

// measuredNews counts the news the listener hands to the registry.
type measuredNews struct {
	reg *notify.Registry
	m   *metrics.Wait
}

func (n measuredNews) Applied(key string, v kv.Version) {
	n.m.News()
	n.reg.Applied(key, v)
}

func (n measuredNews) Lost() { n.reg.Lost() }

// failed is the error of a cache read that failed; nil for a hit or a
// miss, which are answers.
func failed(l kv.Lookup, err error) error {
	if l == kv.CacheFailed {
		return err
	}
	return nil
}

// ignore hides an error that is an answer rather than a failure.
func ignore(err, answer error) error {
	if errors.Is(err, answer) {
		return nil
	}
	return err
}
