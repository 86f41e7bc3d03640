package app

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/redis"
)

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
// pools' statistics and call latencies on reg.
func openData(ctx context.Context, pg postgres.Config, rc redis.Config, reg *prometheus.Registry, c counts) (data, error) {
	pool, err := postgres.Open(ctx, pg)
	if err != nil {
		return data{}, fmt.Errorf("postgres: %w", err)
	}
	rdb, err := redis.NewClient(rc)
	if err != nil {
		pool.Close()
		return data{}, fmt.Errorf("redis: %w", err)
	}
	metrics.RegisterPGXPool(reg, pool)
	metrics.RegisterRedisPool(reg, rdb)
	dep := metrics.NewDependency(reg, measuredOps)
	return data{
		store: measuredStore{store: postgres.NewStore(pool), dep: dep, purged: c.purged},
		cache: measuredCache{cache: redis.NewCache(rdb, rc), dep: dep, reads: c.reads},
		close: func() { _ = rdb.Close(); pool.Close() },
	}, nil
}
