// Command consumer applies the operations queued in RabbitMQ to PostgreSQL
// and Redis, last writer wins. It is configured by environment variables
// (see the README).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/app"
	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/internal/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := config.Load[config.Consumer]()
	log := telemetry.NewLogger(os.Stdout, "kv-consumer", cfg.LogLevel)
	if err != nil {
		log.Fatal().Err(err).Msg("bad configuration")
	}
	goredis.SetLogger(redis.DriverLogger{Log: log})
	if err := run(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("kv-consumer stopped")
		stop()
		os.Exit(1)
	}
	log.Info().Msg("kv-consumer stopped")
}

func run(ctx context.Context, cfg config.Consumer, log zerolog.Logger) error {
	shutdown, err := telemetry.SetupTracing(ctx, "kv-consumer", cfg.InstanceIDOr(cfg.Addr), telemetry.Version())
	if err != nil {
		return err
	}
	defer func() {
		// Flush the last spans, within a bound: an unreachable collector
		// must not hold the exit.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn().Err(err).Msg("flushing traces")
		}
	}()
	return app.RunConsumer(ctx, cfg, log, nil)
}
