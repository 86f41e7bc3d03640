// Command migrate applies the pending migrations of migrations/ to the
// database of DATABASE_URL, then makes the queues of RABBITMQ_URL what
// RABBITMQ_QUEUE_TYPE, RABBITMQ_QUEUE_MAX_LENGTH and RABBITMQ_QUEUE_MAX_BYTES
// say, declaring any declared otherwise again with its messages
// (rabbitmq.MigrateQueues; it refuses while the queue has consumers). Several may run at once: they take turns on the database.
// It waits up to KV_MIGRATE_WAIT for PostgreSQL, then RabbitMQ, to answer,
// so that it may start before the servers do.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/telemetry"
	"github.com/kvstack/kvstack/migrations"
)

func main() {
	config.Flags[config.Migrate]("kv-migrate")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := config.Load[config.Migrate]()
	log := telemetry.NewLogger(os.Stdout, "kv-migrate", cfg.LogLevel)
	if err != nil {
		log.Fatal().Err(err).Msg("bad configuration")
	}
	if err := run(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("migration failed")
		stop()
		if errors.Is(err, rabbitmq.ErrQueueInUse) {
			os.Exit(ExitQueueInUse)
		}
		os.Exit(1)
	}
	log.Info().Str("postgres", cfg.Postgres.String()).Object("rabbitmq", cfg.RabbitMQ).Msg("database and queues are up to date")
}

// ExitQueueInUse is the exit status when a queue must change type but has
// consumers: whoever runs migrate may stop them and run it again (the
// native stack does).
const ExitQueueInUse = 3

func run(ctx context.Context, cfg config.Migrate, log zerolog.Logger) error {
	pool, err := connect(ctx, "PostgreSQL", cfg.Wait, log, func(ctx context.Context) (*pgxpool.Pool, error) {
		return postgres.Open(ctx, cfg.Postgres)
	})
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Apply(ctx, pool); err != nil {
		return err
	}
	if err := migrations.Grant(ctx, pool, migrations.Grants{App: cfg.AppRoles, Monitor: cfg.MonitorRoles}); err != nil {
		return err
	}
	_, err = connect(ctx, "RabbitMQ", cfg.Wait, log, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, rabbitmq.MigrateQueues(ctx, cfg.RabbitMQ, log)
	})
	if err != nil {
		return fmt.Errorf("rabbitmq queues: %w", err)
	}
	return nil
}

// Backoff between attempts to reach a server.
const (
	firstBackoff = 250 * time.Millisecond
	maxBackoff   = 2 * time.Second
)

// connect calls open until it succeeds, fails for another reason than an
// unreachable server (kv.ErrUnavailable: a bad URL will not get better), or
// wait has passed; then it returns open's last error. server names it.
func connect[T any](ctx context.Context, server string, wait time.Duration, log zerolog.Logger, open func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(wait)
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		v, err := open(ctx)
		if err == nil || !errors.Is(err, kv.ErrUnavailable) {
			return v, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return v, fmt.Errorf("%s still unreachable after %s (KV_MIGRATE_WAIT): %w", server, wait, err)
		}
		log.Warn().Err(err).Int("attempt", attempt).Msgf("%s not reachable yet; retrying", server)
		select {
		case <-ctx.Done():
			return v, errors.Join(ctx.Err(), err)
		case <-time.After(min(backoff, left)):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
