package migrations

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Grants names the roles, besides the owner that runs the migrations,
// that use the database (docs/SECURITY.md, least privilege). The roles
// exist already: whoever administers the server makes them (make setup,
// the stack's private engines, compose's init script, CloudNativePG's
// managed roles); the owner only grants.
type Grants struct {
	// App are the API's and the consumer's roles: CONNECT, the schema's
	// USAGE, SELECT, INSERT, UPDATE and DELETE (the consumer's tombstone
	// purge) on kv_store, SELECT on kv_settings (the version-token key).
	// No DDL, no TRUNCATE, nothing on goose's table.
	App []string
	// Monitor are the exporters' roles (members of pg_monitor): CONNECT
	// alone, no right on any table of the schema.
	Monitor []string
}

// Grant makes the migrated schema's privileges what g says, as the owner
// of the database and schema (the role that ran Apply, on pool): nobody
// but the owner, g's roles and superusers may connect (REVOKE CONNECT
// FROM PUBLIC, so that no other role can NOTIFY the applied channel), and
// nobody else may create objects in the schema. It is idempotent; a role
// that does not exist is an error.
func Grant(ctx context.Context, pool *pgxpool.Pool, g Grants) error {
	var db, schema string
	if err := pool.QueryRow(ctx, `SELECT current_database(), current_schema()`).Scan(&db, &schema); err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	stmts := GrantSQL(db, schema, g)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("grant: %s: %w", s, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	return nil
}

// GrantSQL is what Grant runs on database db and schema schema.
func GrantSQL(db, schema string, g Grants) []string {
	id := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	ids := func(roles []string) string {
		out := make([]string, len(roles))
		for i, r := range roles {
			out[i] = id(r)
		}
		return strings.Join(out, ", ")
	}
	stmts := []string{
		"REVOKE CONNECT ON DATABASE " + id(db) + " FROM PUBLIC",
		"REVOKE CREATE ON SCHEMA " + id(schema) + " FROM PUBLIC",
	}
	if all := append(append([]string{}, g.App...), g.Monitor...); len(all) > 0 {
		stmts = append(stmts, "GRANT CONNECT ON DATABASE "+id(db)+" TO "+ids(all))
	}
	if len(g.App) > 0 {
		app := ids(g.App)
		stmts = append(stmts,
			"GRANT USAGE ON SCHEMA "+id(schema)+" TO "+app,
			"GRANT SELECT, INSERT, UPDATE, DELETE ON "+id(schema)+".kv_store TO "+app,
			"GRANT SELECT ON "+id(schema)+".kv_settings TO "+app)
	}
	return stmts
}
