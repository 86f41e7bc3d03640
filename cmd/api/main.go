// Command api serves kvstack's HTTP API: reads cache-aside from Redis and
// PostgreSQL, writes and deletes published durably to RabbitMQ. It is
// configured by environment variables (see the README).
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

	cfg, err := config.Load[config.API]()
	log := telemetry.NewLogger(os.Stdout, "kv-api", cfg.LogLevel)
	if err != nil {
		log.Fatal().Err(err).Msg("bad configuration")
	}
	goredis.SetLogger(redis.DriverLogger{Log: log})
	if err := run(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("kv-api stopped")
		stop()
		os.Exit(1)
	}
	log.Info().Msg("kv-api stopped")
}

func run(ctx context.Context, cfg config.API, log zerolog.Logger) error {
	shutdown, err := telemetry.SetupTracing(ctx, "kv-api", cfg.InstanceIDOr(cfg.Addr), telemetry.Version())
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
	return app.RunAPI(ctx, cfg, log, nil)
}
