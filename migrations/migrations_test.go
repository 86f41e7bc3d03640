package migrations_test

import (
	"context"
	"io/fs"
	"os"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/kvstack/kvstack/internal/postgres/pgtest"
	"github.com/kvstack/kvstack/migrations"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sources lists the versions goose finds among the embedded files.
func sources(t *testing.T) []int64 {
	t.Helper()
	db := stdlib.OpenDB(pgx.ConnConfig{}) // never connects: listing sources needs no server
	defer db.Close()
	p, err := migrations.NewProvider(db, migrations.Files, 0)
	if err != nil {
		t.Fatalf("goose provider: %v", err)
	}
	var versions []int64
	for _, s := range p.ListSources() {
		versions = append(versions, s.Version)
	}
	return versions
}

// goose skips a file whose name is not NNNN_description.sql: a misnamed
// migration would never run. Every file here must be one it runs.
func TestEverySQLFileIsAMigration(t *testing.T) {
	files, err := fs.Glob(migrations.Files, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	versions := sources(t)
	if len(versions) != len(files) {
		t.Errorf("goose runs %d of the %d files %v: name each NNNN_description.sql (README.md)", len(versions), len(files), files)
	}
	for i, v := range versions {
		if v != int64(i+1) {
			t.Errorf("versions %v: want 1, 2, 3… without gaps", versions)
			break
		}
	}
}

func TestApplyTwiceIsNoop(t *testing.T) {
	pool := pgtest.MustEmptyPool(t)
	ctx := testContext(t)

	if err := migrations.Apply(ctx, pool); err != nil {
		t.Fatalf("first Apply: %v", err)
	}
	first := recorded(t, pool)
	if err := migrations.Apply(ctx, pool); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	second := recorded(t, pool)
	if len(first) != len(second) {
		t.Fatalf("records after second Apply: got %d, want %d", len(second), len(first))
	}
	for i := range first {
		if first[i] != second[i] {
			t.Errorf("record %d: got %+v after second Apply, want unchanged %+v", i, second[i], first[i])
		}
	}
}

func TestApplyRecordsEveryVersion(t *testing.T) {
	pool := pgtest.MustPool(t) // migrated by the helper
	want := sources(t)
	got := recorded(t, pool)
	if len(got) != len(want) {
		t.Fatalf("recorded versions: got %d, want %d", len(got), len(want))
	}
	for i, v := range want {
		if got[i].Version != v {
			t.Errorf("record %d: got version %d, want %d", i, got[i].Version, v)
		}
	}
}

func TestApplyConcurrently(t *testing.T) {
	pool := pgtest.MustEmptyPool(t)
	applyConcurrently(t, pool)

	var tables int
	err := pool.QueryRow(testContext(t),
		`SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'kv_store'`).Scan(&tables)
	if err != nil {
		t.Fatalf("count tables: %v", err)
	}
	if tables != 1 {
		t.Errorf("kv_store tables in the test schema: got %d, want 1", tables)
	}
	if got, want := len(recorded(t, pool)), len(sources(t)); got != want {
		t.Errorf("recorded versions: got %d, want %d", got, want)
	}
}

func applyConcurrently(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = migrations.Apply(testContext(t), pool) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Apply %d of %d: %v", i+1, n, err)
		}
	}
}

// A database migrated by kvstack's migrator before goose (a pg_dump of one,
// testdata/legacy_v2.sql) is adopted by processes upgrading at once: the
// versions it recorded are not run again, its data and token key stay.
func TestApplyUpgradesADatabaseOfTheMigratorBeforeGoose(t *testing.T) {
	pool := loadLegacy(t)
	ctx := testContext(t)
	applyConcurrently(t, pool)

	got := recorded(t, pool)
	want := sources(t)
	if len(got) != len(want) {
		t.Fatalf("recorded versions: got %v, want %v", got, want)
	}
	for i, applied := range []string{"2026-12-06 08:54:04.201011+00", "2026-12-06 08:54:04.210126+00"} {
		at, _ := time.Parse("2006-01-02 15:04:05.999999-07", applied)
		if got[i].Version != int64(i+1) || !got[i].AppliedAt.Equal(at) {
			t.Errorf("record %d: got %+v, want version %d applied at %s by the old migrator", i, got[i], i+1, at)
		}
	}
	var key, value string
	err := pool.QueryRow(ctx, `SELECT (SELECT value FROM kv_settings WHERE name = 'token_key'), (SELECT value FROM kv_store WHERE key = 'kept')`).Scan(&key, &value)
	if err != nil {
		t.Fatalf("read the legacy data: %v", err)
	}
	if key != "82846927c8594f9aad665ab121b8e950fc3b476157dd43fcbdb82a0329074b63" || value != "v" {
		t.Errorf("after the upgrade: token key %q, key kept = %q; want the legacy ones", key, value)
	}
}

// An older binary may still migrate with the old migrator after goose
// first ran (a rollback, a branch): goose adopts what it recorded on every
// run, and does not run that file again.
func TestApplyAdoptsWhatTheOldMigratorRecordsLater(t *testing.T) {
	pool := loadLegacy(t)
	ctx := testContext(t)
	// Versions 1 and 2 by goose, then a version 3 by the old migrator.
	fsys := fstest.MapFS{}
	for _, name := range []string{"0001_create_kv_store.sql", "0002_create_kv_settings.sql"} {
		b, err := fs.ReadFile(migrations.Files, name)
		if err != nil {
			t.Fatal(err)
		}
		fsys[name] = &fstest.MapFile{Data: b}
	}
	if err := migrations.ApplyFS(ctx, pool, fsys); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	const v3 = "ALTER TABLE kv_store ADD COLUMN written_by TEXT;" // fails when run twice
	_, err := pool.Exec(ctx, v3+"INSERT INTO schema_migrations (version, name) VALUES (3, 'add_written_by')")
	if err != nil {
		t.Fatalf("the old migrator's version 3: %v", err)
	}
	fsys["0003_add_written_by.sql"] = &fstest.MapFile{Data: []byte("-- +goose Up\n" + v3 + "\n")}
	if err := migrations.ApplyFS(ctx, pool, fsys); err != nil {
		t.Fatalf("Apply with version 3: %v", err)
	}
	if got := recorded(t, pool); len(got) != 3 || got[2].Version != 3 {
		t.Errorf("recorded %v, want versions 1 to 3", got)
	}
}

// loadLegacy is a schema at version 2 as our own migrator left it.
func loadLegacy(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.MustEmptyPool(t)
	dump, err := os.ReadFile("testdata/legacy_v2.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(testContext(t), string(dump)); err != nil {
		t.Fatalf("load the legacy schema: %v", err)
	}
	return pool
}

// A file that fails rolls back alone: the ones before it stay applied and
// recorded, nothing of it stays, and the next run tries it again.
func TestAFailedFileRollsBackAlone(t *testing.T) {
	pool := pgtest.MustEmptyPool(t)
	ctx := testContext(t)
	fsys := fstest.MapFS{
		"0001_good.sql": {Data: []byte("-- +goose Up\nCREATE TABLE good (id int);\n")},
		"0002_bad.sql":  {Data: []byte("-- +goose Up\nCREATE TABLE half (id int);\nSELECT 1/0;\n")},
	}
	for run := 1; run <= 2; run++ {
		if err := migrations.ApplyFS(ctx, pool, fsys); err == nil {
			t.Fatalf("run %d: Apply with a failing file succeeded", run)
		}
		var good, half bool
		err := pool.QueryRow(ctx, `SELECT to_regclass('good') IS NOT NULL, to_regclass('half') IS NOT NULL`).Scan(&good, &half)
		if err != nil {
			t.Fatal(err)
		}
		if got := recorded(t, pool); !good || half || len(got) != 1 || got[0].Version != 1 {
			t.Errorf("run %d: good %v, half %v, recorded %v; want good, not half, version 1 only", run, good, half, got)
		}
	}
}

// TestApplyUsesSearchPath guards the unqualified table names: the tables
// land in the session's schema, not in public.
func TestApplyUsesSearchPath(t *testing.T) {
	pool := pgtest.MustPool(t)
	ctx := testContext(t)
	var schema, current string
	err := pool.QueryRow(ctx,
		`SELECT n.nspname, current_schema() FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.oid = 'kv_store'::regclass`).Scan(&schema, &current)
	if err != nil {
		t.Fatalf("find kv_store: %v", err)
	}
	if schema != current {
		t.Errorf("kv_store schema: got %q, want the search_path schema %q", schema, current)
	}
}

type record struct {
	Version   int64
	AppliedAt time.Time
}

// recorded is what goose recorded as applied, version 0 (its own) aside.
func recorded(t *testing.T, pool *pgxpool.Pool) []record {
	t.Helper()
	rows, err := pool.Query(testContext(t), `SELECT version_id, tstamp AT TIME ZONE current_setting('TimeZone') FROM goose_db_version
		WHERE version_id > 0 AND is_applied ORDER BY version_id`)
	if err != nil {
		t.Fatalf("read goose_db_version: %v", err)
	}
	recs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[record])
	if err != nil {
		t.Fatalf("read goose_db_version: %v", err)
	}
	return recs
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestApplyLeavesThePoolAlone: Apply migrates on connections of its own,
// without statement_timeout, and must not change the pool's.
func TestApplyLeavesThePoolAlone(t *testing.T) {
	pool := pgtest.MustEmptyPool(t)
	ctx := testContext(t)
	var want string
	if err := pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&want); err != nil {
		t.Fatalf("show statement_timeout: %v", err)
	}
	if err := migrations.Apply(ctx, pool); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, c := range pool.AcquireAllIdle(ctx) {
		var got string
		err := c.QueryRow(ctx, "SHOW statement_timeout").Scan(&got)
		c.Release()
		if err != nil {
			t.Fatalf("show statement_timeout: %v", err)
		}
		if got != want {
			t.Errorf("statement_timeout after Apply: got %q, want %q", got, want)
		}
	}
}
