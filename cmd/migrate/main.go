// Command migrate applies the pending migrations of migrations/ to the
// database of DATABASE_URL. Several may run at once: they take turns.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/postgres"
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
	if err := run(ctx, cfg); err != nil {
		log.Error().Err(err).Msg("migration failed")
		stop()
		os.Exit(1)
	}
	log.Info().Str("postgres", cfg.Postgres.String()).Msg("database is up to date")
}

func run(ctx context.Context, cfg config.Migrate) error {
	pool, err := postgres.Open(ctx, cfg.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	return migrations.Apply(ctx, pool)
}
