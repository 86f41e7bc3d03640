package migrations_test

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/kvstack/kvstack/internal/postgres/pgtest"
	"github.com/kvstack/kvstack/migrations"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestAllIsOrderedAndNamed(t *testing.T) {
	ms, err := migrations.All()
	if err != nil {
		t.Fatalf("All: %v", err)
	}
	if len(ms) == 0 {
		t.Fatal("All: got no migrations, want at least 0001")
	}
	if got, want := ms[0].Version, int64(1); got != want {
		t.Errorf("first version: got %d, want %d", got, want)
	}
	if got, want := ms[0].Name, "create_kv_store"; got != want {
		t.Errorf("first name: got %q, want %q", got, want)
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].Version <= ms[i-1].Version {
			t.Errorf("versions out of order: %d after %d", ms[i].Version, ms[i-1].Version)
		}
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	tests := []struct {
		name  string
		files []string
	}{
		{"no version", []string{"create.sql"}},
		{"version not a number", []string{"abcd_create.sql"}},
		{"version zero", []string{"0000_create.sql"}},
		{"no description", []string{"0001_.sql"}},
		{"shared version", []string{"0001_a.sql", "001_b.sql"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys[f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
			}
			if _, err := migrations.Load(fsys); err == nil {
				t.Errorf("Load(%v): got no error, want one", tt.files)
			}
		})
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
	ms, err := migrations.All()
	if err != nil {
		t.Fatalf("All: %v", err)
	}
	got := recorded(t, pool)
	if len(got) != len(ms) {
		t.Fatalf("recorded versions: got %d, want %d", len(got), len(ms))
	}
	for i, m := range ms {
		if got[i].Version != m.Version || got[i].Name != m.Name {
			t.Errorf("record %d: got %d %q, want %d %q", i, got[i].Version, got[i].Name, m.Version, m.Name)
		}
	}
}

func TestApplyConcurrently(t *testing.T) {
	pool := pgtest.MustEmptyPool(t)
	ctx := testContext(t)

	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = migrations.Apply(ctx, pool) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Apply %d of %d: %v", i+1, n, err)
		}
	}

	var tables int
	err := pool.QueryRow(ctx,
		`SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'kv_store'`).Scan(&tables)
	if err != nil {
		t.Fatalf("count tables: %v", err)
	}
	if tables != 1 {
		t.Errorf("kv_store tables in the test schema: got %d, want 1", tables)
	}
	ms, _ := migrations.All()
	if got := recorded(t, pool); len(got) != len(ms) {
		t.Errorf("recorded versions: got %d, want %d", len(got), len(ms))
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
	Name      string
	AppliedAt time.Time
}

func recorded(t *testing.T, pool *pgxpool.Pool) []record {
	t.Helper()
	rows, err := pool.Query(testContext(t), `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	recs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[record])
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	return recs
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestApplyRestoresStatementTimeout: Apply lifts the timeout on its own
// connection while it migrates, and must not hand it back to the pool that
// way.
func TestApplyRestoresStatementTimeout(t *testing.T) {
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
