package migrations

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lockKeySQL derives the advisory lock key from the target schema: processes
// migrating the same schema queue behind one another, while tests migrating
// their own schemas in parallel do not.
const lockKeySQL = `SELECT hashtextextended('kvstack.migrations/' || coalesce(current_schema(), ''), 0)`

const createTableSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    BIGINT PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`

// releaseTimeout bounds releasing the lock once Apply's own context is done.
const releaseTimeout = 5 * time.Second

// Apply brings the schema of db's search_path up to date with the embedded
// migrations. Any number of processes may call it at once: they serialise
// on a session advisory lock held on one dedicated connection, and each
// finds the versions the others recorded, so every file runs exactly once.
// A file that fails rolls back alone; the ones before it stay applied.
func Apply(ctx context.Context, db *pgxpool.Pool) error {
	ms, err := All()
	if err != nil {
		return err
	}
	// The session lock belongs to one connection, so everything below runs
	// on the same one.
	pc, err := db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer pc.Release()
	conn := pc.Conn()

	// Waiting for another process's migration, and a migration itself, may
	// take longer than the statement_timeout meant for queries; ctx bounds
	// them instead. release restores the session's own timeout.
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return fmt.Errorf("migrate: lift statement timeout: %w", err)
	}
	locked := false
	var key int64
	defer func() { release(ctx, conn, locked, key) }()
	if err := conn.QueryRow(ctx, lockKeySQL).Scan(&key); err != nil {
		return fmt.Errorf("migrate: lock key: %w", err)
	}
	// Counted as held even if taking it fails: a cancelled wait may have
	// been granted all the same, and unlocking a lock not held is harmless.
	locked = true
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("migrate: take advisory lock: %w", err)
	}

	if _, err := conn.Exec(ctx, createTableSQL); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		if err := applyOne(ctx, conn, m); err != nil {
			return err
		}
	}
	return nil
}

func appliedVersions(ctx context.Context, conn *pgx.Conn) (map[int64]bool, error) {
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	done := make(map[int64]bool, len(versions))
	for _, v := range versions {
		done[v] = true
	}
	return done, nil
}

// applyOne runs a file and records it in one transaction, so a crash never
// leaves a file half-applied or applied but unrecorded.
func applyOne(ctx context.Context, conn *pgx.Conn, m Migration) error {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// No arguments: pgx sends the simple protocol, which accepts a file
		// of several statements.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate: apply %04d_%s: %w", m.Version, m.Name, err)
	}
	return nil
}

// release unlocks the advisory lock (when taken) and restores the session's
// statement_timeout, even when ctx is already done. If it cannot, it closes
// the connection, which ends the session and with it the lock, rather than
// return a locked or altered connection to the pool.
func release(ctx context.Context, conn *pgx.Conn, locked bool, key int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	var err error
	if locked {
		_, err = conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key)
	}
	if err == nil {
		_, err = conn.Exec(ctx, "RESET statement_timeout")
	}
	if err != nil {
		_ = conn.Close(ctx)
	}
}
