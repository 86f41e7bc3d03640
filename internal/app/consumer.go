package app

import (
	"context"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/httpapi"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/rabbitmq"
)

// RunConsumer applies queued operations until ctx is done, then finishes and
// acks the batch in hand and stops.
//
// PostgreSQL must answer at start. Afterwards an outage of any dependency is
// waited out: the runner reconnects to RabbitMQ, the batch in hand is
// retried while PostgreSQL is away, and Redis writes that fail are repaired
// once it is back.
func RunConsumer(ctx context.Context, cfg config.Consumer, log zerolog.Logger, ready Ready) error {
	log.Info().Object("config", cfg).Msg("starting kv-consumer")
	reg := metrics.New()
	d, err := openData(ctx, cfg.Postgres, cfg.Redis, reg, nil)
	if err != nil {
		return err
	}
	defer d.close()
	store, cache := d.store, d.cache

	m := metrics.NewConsumer(reg, cfg.RabbitMQ.QueueAdd, cfg.RabbitMQ.QueueDel)
	proc := consumer.NewProcessor(store, cache, cfg.Limits, log)
	proc.Measure(m, queuesOf(cfg.RabbitMQ))
	runner := rabbitmq.NewConsumer(cfg.RabbitMQ, proc, log)

	// Everything stops with ctx, or when any part fails; the runner then
	// finishes and acks its batch before it returns.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return runner.Run(gctx) })
	g.Go(func() error { proc.RunCacheRepair(gctx, cfg.CacheRepairInterval); return nil })
	g.Go(func() error {
		consumer.RunTombstonePurge(gctx, store, cfg.TombstoneRetention, cfg.PurgeInterval, m.Purged, log)
		return nil
	})
	g.Go(func() error {
		checks := []httpapi.Check{
			{Name: "postgres", Ping: store.Ping},
			{Name: "redis", Ping: cache.Ping},
		}
		return serve(gctx, cfg.Addr, withAdmin(httpapi.NewHealthHandler(checks, httpapi.DefaultConfig, log), reg), cfg.ShutdownTimeout, ready, log)
	})
	return g.Wait()
}
