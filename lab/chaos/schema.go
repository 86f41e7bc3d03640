package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// schemaChange applies a schema change under load the way
// migrations/README.md says one must be written: expand (a nullable
// column without a default, an index built concurrently, a backfill in
// small batches), the running binaries serving on against the expanded
// schema meanwhile, then contract (the index and the column dropped). Each
// statement that takes a table lock waits for it at most lockTimeout, and
// is tried again, so that it never queues the service's own queries behind
// it for longer.
func schemaChange(hold time.Duration) *action {
	return &action{"expand, then contract kv_store (a column, its index, a backfill)", func(ctx context.Context, c *private) error {
		conn, err := pgx.Connect(ctx, c.s.Get("DATABASE_URL"))
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "SET lock_timeout = '"+lockTimeout.String()+"'"); err != nil {
			return err
		}
		began := time.Now()
		steps := []string{
			"ALTER TABLE kv_store ADD COLUMN IF NOT EXISTS chaos_note TEXT",
			"CREATE INDEX CONCURRENTLY IF NOT EXISTS kv_store_chaos_note ON kv_store (chaos_note)",
		}
		for _, sql := range steps {
			if err := execRetried(ctx, conn, sql); err != nil {
				return err
			}
		}
		rows, err := backfill(ctx, conn)
		if err != nil {
			return err
		}
		expanded := time.Since(began)
		sleepCtx(ctx, hold)
		began = time.Now()
		for _, sql := range []string{
			"DROP INDEX CONCURRENTLY IF EXISTS kv_store_chaos_note",
			"ALTER TABLE kv_store DROP COLUMN IF EXISTS chaos_note",
		} {
			if err := execRetried(ctx, conn, sql); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "==> chaos: schema expanded in %s (%d rows backfilled), contracted in %s\n",
			expanded.Round(time.Millisecond), rows, time.Since(began).Round(time.Millisecond))
		return nil
	}}
}

// lockTimeout bounds a DDL statement's wait for its table lock: queued
// behind a long query, it would hold every later query of the table.
const lockTimeout = 2 * time.Second

// execRetried runs one statement, again while it only timed out waiting
// for its lock.
func execRetried(ctx context.Context, conn *pgx.Conn, sql string) error {
	for attempt := 1; ; attempt++ {
		_, err := conn.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if err == nil || attempt >= 10 || !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
			if err != nil {
				return fmt.Errorf("%s: %w", sql, err)
			}
			return nil
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// backfill sets the new column in batches of a few hundred rows, each its
// own short transaction, so that no row stays locked against the
// consumer's upserts for long.
func backfill(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var total int64
	for {
		tag, err := conn.Exec(ctx, `UPDATE kv_store SET chaos_note = 'backfilled'
			WHERE key IN (SELECT key FROM kv_store WHERE chaos_note IS NULL LIMIT 500 FOR UPDATE SKIP LOCKED)`)
		if err != nil {
			return total, fmt.Errorf("backfill: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() == 0 {
			return total, nil
		}
	}
}
