package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/migrations"
)

// scratchStore makes schema kvbench hold a fresh kv_store, created by the
// project's own migrations (they apply to their connection's search_path),
// so that the raw upsert writes to the consumer's table, constraints and
// index included.
func scratchStore(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS kvbench CASCADE; CREATE SCHEMA kvbench`); err != nil {
		return fmt.Errorf("scratch schema: %w", err)
	}
	cfg := pool.Config() // a copy
	cfg.ConnConfig.RuntimeParams["search_path"] = "kvbench"
	cfg.MinConns, cfg.MaxConns = 0, 1
	scratch, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("scratch schema: %w", err)
	}
	defer scratch.Close()
	if err := migrations.Apply(ctx, scratch); err != nil {
		return fmt.Errorf("scratch schema: %w", err)
	}
	return nil
}

// rawUpsert runs batches of batch new keys through the consumer's upsert
// from clients connections, one transaction each (as the consumer commits
// each batch), for dur; it returns rows per second.
func rawUpsert(ctx context.Context, pool *pgxpool.Pool, clients, batch int, dur time.Duration, value string, run int) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	sql := postgres.UpsertStatement("kvbench.kv_store") // the consumer's statement, on a scratch table
	var (
		mu    sync.Mutex
		rows  int
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := make([]string, batch)
			values := make([]*string, batch)
			times := make([]time.Time, batch)
			ids := make([][16]byte, batch) // as the consumer passes them
			deleted := make([]bool, batch)
			writers := make([]*string, batch) // none named, as with auth off
			for n := 0; ; n++ {
				now := time.Now()
				for i := range batch {
					keys[i] = fmt.Sprintf("r%d:c%d:%09d:%03d", run, c, n, i)
					values[i] = &value
					times[i] = now
					ids[i] = uuid.New()
				}
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					rs, err := tx.Query(ctx, sql, keys, values, times, ids, deleted, writers)
					if err != nil {
						return err
					}
					_, err = pgx.CollectRows(rs, pgx.RowTo[string])
					return err
				})
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					rows += batch
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(rows) / time.Since(start).Seconds(), first
}
