package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kvstack/kvstack/internal/postgres/pgtest"
	"github.com/kvstack/kvstack/migrations"
)

// The roles make setup creates on the shared server (lab/scripts/services.sh).
const (
	appRole     = "kvstack_app"
	monitorRole = "kvstack_monitor"
)

// After Grant, the app's role reads and writes kv_store's rows and reads
// the token key, and can do nothing else: no DDL, no TRUNCATE, no goose
// table; the monitor's role connects but reads no table.
func TestGrantGivesTheRolesTheirRightsAndNoMore(t *testing.T) {
	pool := pgtest.MustPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := migrations.Grant(ctx, pool, migrations.Grants{App: []string{appRole}, Monitor: []string{monitorRole}}); err != nil {
		t.Fatalf("Grant (the roles are make setup's): %v", err)
	}
	// Idempotent: the stack migrates at every start.
	if err := migrations.Grant(ctx, pool, migrations.Grants{App: []string{appRole}, Monitor: []string{monitorRole}}); err != nil {
		t.Fatalf("Grant again: %v", err)
	}
	schema := pool.Config().ConnConfig.RuntimeParams["search_path"]
	connect := func(role string) *pgx.Conn {
		u, err := url.Parse(pgtest.URL())
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(role, role) // make setup's passwords
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatalf("connect as %s: %v", role, err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	app, monitor := connect(appRole), connect(monitorRole)
	for _, sql := range []string{
		`INSERT INTO kv_store (key, value, last_updated, op_id) VALUES ('k', 'v', now(), gen_random_uuid())`,
		`UPDATE kv_store SET value = 'w' WHERE key = 'k'`,
		`SELECT count(*) FROM kv_store`,
		`SELECT value FROM kv_settings WHERE name = 'token_key'`,
		`DELETE FROM kv_store WHERE key = 'k'`,
		`SELECT pg_notify('kvstack_test', 'x')`,
	} {
		if _, err := app.Exec(ctx, sql); err != nil {
			t.Errorf("as %s: %s: %v", appRole, sql, err)
		}
	}
	refused := func(conn *pgx.Conn, role, sql string) {
		t.Helper()
		_, err := conn.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
			t.Errorf("as %s: %s: %v, want insufficient_privilege (42501)", role, sql, err)
		}
	}
	for _, sql := range []string{
		`CREATE TABLE kv_other (k text)`,
		`ALTER TABLE kv_store ADD COLUMN x text`,
		`TRUNCATE kv_store`,
		`DROP TABLE kv_store`,
		`UPDATE kv_settings SET value = 'x'`,
		`DELETE FROM goose_db_version`,
	} {
		refused(app, appRole, sql)
	}
	// Named with their schema: the monitor's role is refused the schema
	// here (a test's own), the tables themselves in public (lab/e2e).
	for _, sql := range []string{`SELECT count(*) FROM %s.kv_store`, `SELECT value FROM %s.kv_settings`, `DELETE FROM %s.kv_store`} {
		refused(monitor, monitorRole, fmt.Sprintf(sql, pgx.Identifier{schema}.Sanitize()))
	}
	// PUBLIC may not connect: only the owner and the granted roles.
	var publicConnect bool
	if err := pool.QueryRow(ctx, `SELECT has_database_privilege('public', current_database(), 'CONNECT')`).Scan(&publicConnect); err != nil || publicConnect {
		t.Errorf("PUBLIC's CONNECT on the database: %v (%v), want revoked", publicConnect, err)
	}
}
