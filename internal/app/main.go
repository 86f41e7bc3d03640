package app

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/internal/telemetry"
)

// Main is the whole of a binary's main: it answers -env (config.Flags),
// reads the configuration C from
// the environment, builds the JSON logger, sets up tracing for service, runs
// run until SIGINT or SIGTERM, flushes the traces, and exits non-zero if run
// failed.
func Main[C config.Process](service string, run func(context.Context, C, zerolog.Logger, Ready) error) {
	config.Flags[C](service)
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := config.Load[C]()
	c, addr := cfg.Base()
	// Lines are gathered and written together (the API's access log would
	// be a write per request), warnings and worse at once.
	out := telemetry.NewLogBuffer(os.Stdout, logFlushInterval, 64<<10)
	log := telemetry.NewLogger(out, service, c.LogLevel)
	if err != nil {
		log.Fatal().Err(err).Msg("bad configuration")
	}
	goredis.SetLogger(redis.DriverLogger{Log: log})

	if err := runTraced(ctx, service, c.InstanceIDOr(addr), log, func(ctx context.Context) error {
		return run(ctx, cfg, log, nil)
	}); err != nil {
		log.Error().Err(err).Msg(service + " stopped")
		_ = out.Close()
		stop()
		os.Exit(1)
	}
	log.Info().Msg(service + " stopped")
	_ = out.Close()
}

// logFlushInterval bounds how long an info line waits in the log's buffer.
const logFlushInterval = 100 * time.Millisecond

func runTraced(ctx context.Context, service, instance string, log zerolog.Logger, run func(context.Context) error) error {
	shutdown, err := telemetry.SetupTracing(ctx, service, instance, telemetry.Version())
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
	return run(ctx)
}
