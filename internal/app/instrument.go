package app

import (
	"context"
	"errors"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/redis"
)

// The adapters know nothing of metrics: these wrappers time each call and
// classify its result, so that what is measured is visible in one place.

// measuredStore times every PostgreSQL call.
type measuredStore struct {
	*postgres.Store
	dep *metrics.Dependency
}

func (s measuredStore) Get(ctx context.Context, key string) (kv.Entry, error) {
	start := time.Now()
	e, err := s.Store.Get(ctx, key)
	s.dep.Observe(ctx, metrics.Postgres, "get", start, ignore(err, kv.ErrNotFound))
	return e, err
}

func (s measuredStore) List(ctx context.Context, after string, limit int) ([]kv.Entry, error) {
	start := time.Now()
	es, err := s.Store.List(ctx, after, limit)
	s.dep.Observe(ctx, metrics.Postgres, "list", start, err)
	return es, err
}

func (s measuredStore) ApplyBatch(ctx context.Context, ops []kv.Op) ([]kv.Outcome, error) {
	start := time.Now()
	out, err := s.Store.ApplyBatch(ctx, ops)
	s.dep.Observe(ctx, metrics.Postgres, "apply_batch", start, err)
	return out, err
}

func (s measuredStore) PurgeTombstones(ctx context.Context, olderThan time.Time) (int64, error) {
	start := time.Now()
	n, err := s.Store.PurgeTombstones(ctx, olderThan)
	s.dep.Observe(ctx, metrics.Postgres, "purge_tombstones", start, err)
	return n, err
}

// measuredCache times every Redis call and counts the read path's hits,
// misses and fills.
type measuredCache struct {
	*redis.Cache
	dep   *metrics.Dependency
	cache *metrics.Cache
}

func (c measuredCache) Get(ctx context.Context, key string) (kv.Entry, error) {
	start := time.Now()
	e, err := c.Cache.Get(ctx, key)
	c.dep.Observe(ctx, metrics.Redis, "get", start, ignore(err, kv.ErrCacheMiss))
	switch {
	case err == nil:
		c.cache.Lookup(metrics.Hit)
	case errors.Is(err, kv.ErrCacheMiss):
		c.cache.Lookup(metrics.Miss)
	default:
		c.cache.Lookup(metrics.Error)
	}
	return e, err
}

func (c measuredCache) Fill(ctx context.Context, e kv.Entry) (bool, error) {
	start := time.Now()
	stored, err := c.Cache.Fill(ctx, e)
	c.dep.Observe(ctx, metrics.Redis, "fill", start, err)
	switch {
	case err != nil:
		c.cache.Fill(metrics.Error)
	case stored:
		c.cache.Fill(metrics.FillStored)
	default:
		c.cache.Fill(metrics.FillStale)
	}
	return stored, err
}

func (c measuredCache) Apply(ctx context.Context, entries []kv.Entry) error {
	start := time.Now()
	err := c.Cache.Apply(ctx, entries)
	c.dep.Observe(ctx, metrics.Redis, "apply", start, err)
	return err
}

func (c measuredCache) Purge(ctx context.Context) error {
	start := time.Now()
	err := c.Cache.Purge(ctx)
	c.dep.Observe(ctx, metrics.Redis, "purge", start, err)
	return err
}

// measuredPublisher counts publishes by outcome and times them to the
// confirm.
type measuredPublisher struct {
	*rabbitmq.Publisher
	m      *metrics.Publish
	queues map[kv.Kind]string
}

func (p measuredPublisher) Publish(ctx context.Context, op kv.Op) error {
	start := time.Now()
	err := p.Publisher.Publish(ctx, op)
	queue, ok := p.queues[op.Kind]
	if !ok {
		return err // an invalid kind never reaches a queue
	}
	p.m.Observe(ctx, queue, publishOutcome(err), time.Since(start))
	return err
}

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

// ignore hides an error that is an answer rather than a failure.
func ignore(err, answer error) error {
	if errors.Is(err, answer) {
		return nil
	}
	return err
}

// queuesOf maps each kind of operation to its queue.
func queuesOf(cfg rabbitmq.Config) map[kv.Kind]string {
	return map[kv.Kind]string{kv.KindPut: cfg.QueueAdd, kv.KindDelete: cfg.QueueDel}
}
