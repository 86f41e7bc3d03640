// Package pgtest gives each test its own PostgreSQL schema, so that tests of
// any package can run in parallel against one real server and leave nothing
// behind. The server is the one DATABASE_URL names (the local development
// database by default); when it does not answer, the test fails with a
// message that says so — it never skips.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/migrations"
)

// setupTimeout bounds connecting, creating the schema and migrating.
const setupTimeout = 30 * time.Second

// URL is the server the tests use: DATABASE_URL, or the local default.
func URL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return postgres.DefaultConfig().URL
}

// MustPool returns a pool on a fresh schema holding the migrated kvstack
// tables. The pool is closed and the schema dropped when the test ends.
func MustPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool := MustEmptyPool(tb)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := migrations.Apply(ctx, pool); err != nil {
		tb.Fatalf("pgtest: migrate test schema on PostgreSQL at %s: %v", postgres.RedactURL(URL()), err)
	}
	return pool
}

// MustURL returns a DATABASE_URL whose connections use a fresh, migrated
// schema, for tests that boot whole processes. The schema is dropped when the
// test ends.
func MustURL(tb testing.TB) string {
	tb.Helper()
	pool := MustPool(tb)
	u, err := url.Parse(URL())
	if err != nil {
		tb.Fatalf("pgtest: DATABASE_URL is not a URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", pool.Config().ConnConfig.RuntimeParams["search_path"])
	u.RawQuery = q.Encode()
	return u.String()
}

// MustPoolAt returns a small pool on url (from MustURL), closed when the
// test ends.
func MustPoolAt(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs PostgreSQL; not run with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	cfg := postgres.DefaultConfig()
	cfg.URL, cfg.MaxConns, cfg.MinConns = url, 4, 0
	pool, err := postgres.Open(ctx, cfg)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// MustEmptyPool returns a pool whose connections use a fresh, empty schema
// as their search_path, for tests of the migrations themselves. The pool is
// closed and the schema dropped when the test ends.
func MustEmptyPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs PostgreSQL; not run with -short (make test runs it)")
	}
	url := URL()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	schema := "test_" + randomHex(8)
	if err := exec(ctx, url, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("pgtest: PostgreSQL at %s: create schema (is the server running? set DATABASE_URL to use another): %v",
			postgres.RedactURL(url), err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := exec(ctx, url, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("pgtest: drop schema %s on PostgreSQL at %s: %v", schema, postgres.RedactURL(url), err)
		}
	})

	cfg := postgres.DefaultConfig()
	cfg.URL = url
	// Many test pools share the server's connection limit with the other
	// packages' tests: keep each one small and open nothing eagerly.
	cfg.MaxConns, cfg.MinConns = 4, 0
	pool, err := postgres.Open(ctx, cfg, postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["search_path"] = schema
	}))
	if err != nil {
		tb.Fatalf("pgtest: %v", err) // Open's error names PostgreSQL and the masked URL.
	}
	// Registered after the drop, so it runs before it: the schema goes once
	// no connection uses it.
	tb.Cleanup(pool.Close)
	return pool
}

// exec runs one statement on a connection of its own, outside any test pool.
func exec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
