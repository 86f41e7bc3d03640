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

// openData opens PostgreSQL, which must answer, and a Redis client, which
// need not (reads degrade to PostgreSQL until it does), and exports their
// pools' statistics and call latencies on reg. reads, when not nil, counts
// the read path's cache hits, misses and fills.
func openData(ctx context.Context, pg postgres.Config, rc redis.Config, reg *prometheus.Registry, reads *metrics.Cache) (data, error) {
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
	dep := metrics.NewDependency(reg)
	return data{
		store: measuredStore{postgres.NewStore(pool), dep},
		cache: measuredCache{Cache: redis.NewCache(rdb, rc), dep: dep, cache: reads},
		close: func() { _ = rdb.Close(); pool.Close() },
	}, nil
}
