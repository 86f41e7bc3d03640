// Package migrations embeds the versioned SQL that creates kvstack's schema
// and applies it with goose, so that the binaries, cmd/migrate and the tests
// all run exactly the same statements. README.md here says how to add one.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
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
	return goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(adoptingLocker{locker}),
		goose.WithDisableGlobalRegistry(true))
}

// adoptingLocker is goose's session lock that, once held, adopts the
// versions kvstack's own migrator recorded before goose (table
// schema_migrations) and goose's table lacks, so that a database that
// migrator migrated is not migrated again, even one an older binary
// migrated further after goose first ran. goose takes the lock only when
// its first look (which creates its table) finds a version to apply.
type adoptingLocker struct{ lock.SessionLocker }

func (l adoptingLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if err := l.SessionLocker.SessionLock(ctx, conn); err != nil {
		return err
	}
	if err := adopt(ctx, conn); err != nil {
		return errors.Join(err, l.SessionUnlock(context.WithoutCancel(ctx), conn))
	}
	return nil
}

func adopt(ctx context.Context, conn *sql.Conn) error {
	var both bool
	err := conn.QueryRowContext(ctx, `SELECT count(*) = 2 FROM pg_tables WHERE schemaname = current_schema()
		AND tablename IN ('schema_migrations', '`+goose.DefaultTablename+`')`).Scan(&both)
	if err != nil || !both {
		return err
	}
	_, err = conn.ExecContext(ctx, `INSERT INTO `+goose.DefaultTablename+` (version_id, is_applied, tstamp)
		SELECT version, true, applied_at FROM schema_migrations m
		WHERE NOT EXISTS (SELECT 1 FROM `+goose.DefaultTablename+` g WHERE g.version_id = m.version)
		ORDER BY version`)
	if err != nil {
		return fmt.Errorf("adopt the versions of schema_migrations: %w", err)
	}
	return nil
}
