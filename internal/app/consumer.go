package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/httpapi"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/msgsig"
	"github.com/kvstack/kvstack/internal/rabbitmq"
)

// RunConsumer applies queued operations until ctx is done, then stops:
// /readyz turns 503 at once, the runner takes no more deliveries, and
// finishes and settles the batch in hand, or, when it cannot (a dependency
// down), gives it back to the broker unsettled, which delivers it again
// to another consumer; what was prefetched and not batched goes back too.
//
// PostgreSQL must answer at start. Afterwards an outage of any dependency is
// waited out: the runner opens a new RabbitMQ session, the batch in hand is
// retried while PostgreSQL is away, and Redis writes that fail are repaired
// once it is back. On a Redis Cluster, a shard whose master changed is
// purged (runMasterCheck).
func RunConsumer(ctx context.Context, cfg config.Consumer, log zerolog.Logger, ready Ready) error {
	log.Info().Object("config", cfg).Msg("starting kv-consumer")
	if err := errors.Join(cfg.Consumer.Validate(), cfg.Health.Validate()); err != nil {
		return err
	}
	keys, err := msgsig.ParseKeys(cfg.Messages.Keys)
	if err != nil {
		return err
	}
	if cfg.Consumer.AcceptUnsigned {
		log.Warn().Msg("KV_ACCEPT_UNSIGNED_MESSAGES is on: messages without a signature are applied, so anyone who can publish to the queues can write any key; turn it off once every API signs (kvstack_consumer_unsigned_accepted_total stops growing)")
	}
	reg := metrics.New()
	m := metrics.NewConsumer(reg, consumer.DeadLetterReasons, cfg.RabbitMQ.QueueAdd, cfg.RabbitMQ.QueueDel)
	metrics.RegisterQueueBound(reg, cfg.RabbitMQ.QueueMaxLength, cfg.RabbitMQ.QueueAdd, cfg.RabbitMQ.QueueDel)
	d, err := openData(ctx, cfg.Postgres, cfg.Redis, reg, counts{purged: m}, log)
	if err != nil {
		return err
	}
	defer d.close()

	clk, stopClock, err := startClock(ctx, cfg.Clock, d.store.store, reg, log)
	if err != nil {
		return err
	}
	defer stopClock()
	proc := consumer.NewProcessor(d.store, d.cache, consumer.Checks{
		Limits: cfg.Limits, Keys: keys,
		AcceptUnsigned: cfg.Consumer.AcceptUnsigned, OnUnsigned: m.UnsignedAccepted,
		MaxClockSkew: cfg.Clock.MaxSkew, Now: clk.Now,
	}, log)
	m.RepairsPending(proc.PendingRepairs)
	src, err := rabbitmq.NewSource(cfg.RabbitMQ, cfg.RabbitMQ.PrefetchFor(cfg.Consumer.BatchSize), log)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	runner := consumer.NewRunner(src, measuredHandler{h: proc, m: m}, cfg.Consumer, log)

	admin, err := listenAdmin(cfg.AdminAddr, reg, log)
	if err != nil {
		return err
	}
	defer admin.close()
	// Everything stops with ctx, or when any part fails; the runner then
	// finishes and settles its batch before it returns.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return runner.Run(gctx) })
	g.Go(func() error { proc.RunCacheRepair(gctx, cfg.Consumer.CacheRepairInterval); return nil })
	if cfg.Redis.IsCluster() {
		g.Go(func() error { runMasterCheck(gctx, d.cache, cfg.Consumer.MasterCheckInterval, log); return nil })
	}
	g.Go(func() error {
		consumer.RunTombstonePurge(gctx, d.store, cfg.Consumer.TombstoneRetention, cfg.Consumer.PurgeInterval, log)
		return nil
	})
	readiness, stopChecking := monitor(ctx, cfg.Health, dependencyChecks(d.store.Ping, d.cache.Ping, src.Ready), consumerCapabilities, reg, log)
	defer stopChecking()
	g.Go(func() error {
		// Nothing is routed to a consumer: it stops taking deliveries at
		// once, with no drain delay.
		stop := stopping{timeout: cfg.ShutdownTimeout, drain: readiness.Drain}
		return serve(gctx, cfg.Addr, httpapi.NewHealthHandler(readiness, log), stop, admin.ready(ready), log)
	})
	return g.Wait()
}
