// Package migrations embeds the versioned SQL that creates kvstack's schema
// and applies it with goose, so that the binaries, cmd/migrate and the tests
// all run exactly the same statements. README.md here says how to add one.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// lockIDSQL derives the advisory lock key from the target schema: processes
// migrating the same schema queue behind one another, while tests migrating
// their own schemas in parallel do not. It is the key kvstack's migrator
// took before goose, so that an old and a new binary exclude each other too.
const lockIDSQL = `SELECT hashtextextended('kvstack.migrations/' || coalesce(current_schema(), ''), 0)`

// Waiting for another process's migration: a try every lockPoll, for at
// most lockPolls tries (10 minutes).
const (
	lockPoll  = 1 // second, goose's smallest
	lockPolls = 600
)

// Apply brings the schema of pool's search_path up to date with the
// embedded migrations. Any number of processes may call it at once: they
// take turns on a session advisory lock, and each finds the versions the
// others recorded, so every file runs exactly once. A file that fails rolls
// back alone; the ones before it stay applied.
func Apply(ctx context.Context, pool *pgxpool.Pool) error {
	return apply(ctx, pool, files)
}

func apply(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) error {
	var lockID int64
	if err := pool.QueryRow(ctx, lockIDSQL).Scan(&lockID); err != nil {
		return fmt.Errorf("migrate: lock key: %w", err)
	}
	// Waiting for the lock, and a migration itself, may take longer than
	// the statement_timeout meant for queries: goose runs on connections of
	// its own, without it, and ctx bounds them instead.
	cc := pool.Config().ConnConfig
	cc.RuntimeParams["statement_timeout"] = "0"
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	p, err := newProvider(db, fsys, lockID)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func newProvider(db *sql.DB, fsys fs.FS, lockID int64) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID), lock.WithLockTimeout(lockPoll, lockPolls))
	if err != nil {
		return nil, err
	}
	store, err := database.NewStore(database.DialectPostgres, goose.DefaultTablename)
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectCustom, db, fsys,
		goose.WithStore(adoptingStore{store.(database.StoreExtender)}),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true))
}

// adoptingStore is goose's PostgreSQL store that, when it creates its
// version table, adopts the versions kvstack's own migrator recorded before
// goose (table schema_migrations), so that a database it migrated is not
// migrated again. goose creates the table and records version 0 in one
// transaction under the lock; the adoption joins them.
type adoptingStore struct{ database.StoreExtender }

func (s adoptingStore) Insert(ctx context.Context, db database.DBTxConn, req database.InsertRequest) error {
	if err := s.StoreExtender.Insert(ctx, db, req); err != nil || req.Version != 0 {
		return err
	}
	var legacy bool
	err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_tables
		WHERE schemaname = current_schema() AND tablename = 'schema_migrations')`).Scan(&legacy)
	if err != nil || !legacy {
		return err
	}
	_, err = db.ExecContext(ctx, `INSERT INTO `+s.Tablename()+` (version_id, is_applied, tstamp)
		SELECT version, true, applied_at FROM schema_migrations ORDER BY version`)
	return err
}
