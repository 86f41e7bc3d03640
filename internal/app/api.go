package app

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/httpapi"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/rabbitmq"
)

// RunAPI runs the HTTP API until ctx is done.
//
// PostgreSQL must answer at start (it is the truth; a supervisor restarts
// the process). Redis and RabbitMQ need not: reads degrade to PostgreSQL
// and writes get 503 until they come, and /readyz says which is missing.
func RunAPI(ctx context.Context, cfg config.API, log zerolog.Logger, ready Ready) error {
	log.Info().Object("config", cfg).Msg("starting kv-api")
	reg := metrics.New()
	d, err := openData(ctx, cfg.Postgres, cfg.Redis, reg, counts{reads: metrics.NewCache(reg)})
	if err != nil {
		return err
	}
	defer d.close()

	pub, err := rabbitmq.NewPublisher(cfg.RabbitMQ, log)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	// Closed after the server has drained: in-flight PUTs still publish.
	defer pub.Close()
	// Give the broker a moment so that the first writes need not be refused;
	// past it, serve anyway: writes get 503 until the publisher connects.
	wctx, cancel := context.WithTimeout(ctx, cfg.RabbitMQ.PublishTimeout)
	if err := pub.WaitReady(wctx); err != nil {
		log.Warn().Err(err).Msg("RabbitMQ not reachable yet; writes get 503 until it is")
	}
	cancel()

	mpub := measuredPublisher{pub: pub, m: metrics.NewPublish(reg, cfg.RabbitMQ.QueueAdd, cfg.RabbitMQ.QueueDel), queues: queuesOf(cfg.RabbitMQ)}
	svc := kv.NewService(d.store, d.cache, mpub, cfg.Limits, log)
	checks := []httpapi.Check{
		{Name: "postgres", Ping: d.store.Ping},
		{Name: "redis", Ping: d.cache.Ping},
		{Name: "rabbitmq", Ping: mpub.Ready},
	}
	handler := httpapi.NewHandler(svc, checks, cfg.HTTP, log, metrics.NewHTTP(reg))
	return serve(ctx, cfg.Addr, traceHTTP(withAdmin(handler, reg)), cfg.ShutdownTimeout, ready, log)
}
