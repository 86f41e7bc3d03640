//go:build e2e

package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Least privilege (docs/SECURITY.md): each process's credentials allow
// what it does and nothing more. Each case connects with the credentials
// the stack gives that process.

// The replicas' and the consumer's PostgreSQL role cannot change the
// schema; the exporter's cannot read kvstack's tables; PUBLIC cannot
// connect to the database.
func TestPostgresRolesHoldLeastPrivilege(t *testing.T) {
	env := loadStackEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func(what, url string) *pgx.Conn {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connect as %s: %v", what, err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	refused := func(conn *pgx.Conn, what, sql string) {
		t.Helper()
		_, err := conn.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
			t.Errorf("as %s: %s: %v, want insufficient_privilege (42501)", what, sql, err)
		}
	}
	app := connect("the app (KV_APP_DATABASE_URL)", env.s.Get("KV_APP_DATABASE_URL"))
	// What it must do still works.
	var n int64
	if err := app.QueryRow(ctx, "SELECT count(*) FROM kv_store").Scan(&n); err != nil {
		t.Errorf("the app's role reads kv_store: %v", err)
	}
	for _, sql := range []string{"CREATE TABLE kv_e2e_privilege (k text)", "TRUNCATE kv_store", "ALTER TABLE kv_store ADD COLUMN x text",
		"UPDATE kv_settings SET value = value"} {
		refused(app, "the app", sql)
	}
	monitor := connect("the exporter (POSTGRES_EXPORTER_DSN)", env.s.Get("POSTGRES_EXPORTER_DSN"))
	for _, sql := range []string{"SELECT count(*) FROM kv_store", "SELECT value FROM kv_settings"} {
		refused(monitor, "the exporter", sql)
	}
	// It still sees the statistics it exports.
	if err := monitor.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").Scan(&n); err != nil {
		t.Errorf("the exporter's role reads pg_stat_activity: %v", err)
	}
	var publicConnect bool
	if err := app.QueryRow(ctx, "SELECT has_database_privilege('public', current_database(), 'CONNECT')").Scan(&publicConnect); err != nil || publicConnect {
		t.Errorf("PUBLIC may connect to the database: %v (%v), want revoked", publicConnect, err)
	}
}
