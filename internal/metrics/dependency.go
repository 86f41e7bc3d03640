package metrics

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
)

// Dependency is the latency and errors of calls to PostgreSQL, Redis and
// RabbitMQ, by operation.
type Dependency struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

// Dependencies.
const (
	Postgres = "postgres"
	Redis    = "redis"
)

// NewDependency registers the dependency metrics on reg. ops lists, per
// dependency, the operations that will be measured, so that each one's
// error counter is exported from the start, at 0.
func NewDependency(reg prometheus.Registerer, ops map[string][]string) *Dependency {
	m := &Dependency{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvstack_dependency_duration_seconds",
			Help:    "Time of one call to a dependency, by dependency (postgres, redis) and operation.",
			Buckets: latencyBuckets,
		}, []string{"dependency", "operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_dependency_errors_total",
			Help: "Calls to a dependency that failed, by dependency and operation.",
		}, []string{"dependency", "operation"}),
	}
	for dep, names := range ops {
		for _, op := range names {
			m.errors.WithLabelValues(dep, op)
		}
	}
	reg.MustRegister(m.duration, m.errors)
	return m
}

// Observe records one call that started at start.
func (m *Dependency) Observe(ctx context.Context, dependency, operation string, start time.Time, err error) {
	if m == nil {
		return
	}
	observe(m.duration.WithLabelValues(dependency, operation), ctx, time.Since(start))
	if err != nil {
		m.errors.WithLabelValues(dependency, operation).Inc()
	}
}

// RegisterPGXPool exports the statistics of a PostgreSQL pool.
func RegisterPGXPool(reg prometheus.Registerer, pool *pgxpool.Pool) {
	gauge := func(name, help string, f func(*pgxpool.Stat) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(pool.Stat()) })
	}
	counter := func(name, help string, f func(*pgxpool.Stat) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(pool.Stat()) })
	}
	reg.MustRegister(
		gauge("kvstack_pg_pool_acquired_connections", "PostgreSQL connections in use.", func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }),
		gauge("kvstack_pg_pool_idle_connections", "PostgreSQL connections idle in the pool.", func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }),
		gauge("kvstack_pg_pool_max_connections", "Most PostgreSQL connections the pool may open.", func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }),
		counter("kvstack_pg_pool_acquires_total", "Connections acquired from the pool.", func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }),
		counter("kvstack_pg_pool_empty_acquires_total", "Acquires that had to wait for a connection.", func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }),
		counter("kvstack_pg_pool_acquire_wait_seconds_total", "Time spent acquiring connections.", func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }),
	)
}

// RegisterRedisPool exports the statistics of a Redis client's pool.
func RegisterRedisPool(reg prometheus.Registerer, client goredis.UniversalClient) {
	gauge := func(name, help string, f func(*goredis.PoolStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(client.PoolStats()) })
	}
	counter := func(name, help string, f func(*goredis.PoolStats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(client.PoolStats()) })
	}
	reg.MustRegister(
		gauge("kvstack_redis_pool_connections", "Redis connections open.", func(s *goredis.PoolStats) float64 { return float64(s.TotalConns) }),
		gauge("kvstack_redis_pool_idle_connections", "Redis connections idle.", func(s *goredis.PoolStats) float64 { return float64(s.IdleConns) }),
		counter("kvstack_redis_pool_timeouts_total", "Waits for a Redis connection that timed out.", func(s *goredis.PoolStats) float64 { return float64(s.Timeouts) }),
	)
}
