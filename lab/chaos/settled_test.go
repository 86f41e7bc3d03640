package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kvstack/kvstack/internal/engine"
)

// A commit that waits for a synchronous standby is stamped (the time a
// restore to T compares with T) before the wait, and visible only after
// it: a read just after T misses it, though a restore to T brings it back.
// make dr-drill-ha read the state at T so and counted such keys as lost.
// Here the standby never comes (synchronous_standby_names names none that
// runs): settledAt must not return while that commit waits, and once the
// wait is released, the row is visible to the read that follows.
func TestSettledAtWaitsForCommitsStampedBeforeT(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private PostgreSQL; not run with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ports, err := engine.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvchaos-settled-")
	if err != nil {
		t.Fatal(err)
	}
	pg := &engine.Postgres{Port: ports[0], Dir: filepath.Join(dir, "pg")}
	p, err := engine.Start(ctx, dir, testLog{t}, pg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	url := pg.URL("postgres", "", "postgres")
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE TABLE rows (n int)")
	exec("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
	exec("SELECT pg_reload_conf()")
	time.Sleep(500 * time.Millisecond) // the reload reaches every backend

	writer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(context.Background())
	committed := make(chan error, 1)
	go func() {
		_, err := writer.Exec(ctx, "INSERT INTO rows VALUES (1)")
		committed <- err
	}()
	waiting := false
	for deadline := time.Now().Add(30 * time.Second); !waiting && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := pool.QueryRow(ctx, "SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if !waiting {
		t.Fatal("the INSERT never waited for the synchronous standby")
	}
	// T: the INSERT's commit is stamped, and waits.
	var seen int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM rows").Scan(&seen); err != nil || seen != 0 {
		t.Fatalf("a read just after T: %d rows (%v); want 0, the commit still waiting", seen, err)
	}
	if err := settledAt(ctx, pool, time.Second); err == nil {
		t.Fatal("settledAt returned while a commit stamped before T still waited for its standby")
	}
	exec("ALTER SYSTEM RESET synchronous_standby_names")
	exec("SELECT pg_reload_conf()")
	if err := settledAt(ctx, pool, 30*time.Second); err != nil {
		t.Fatalf("settledAt once the wait is released: %v", err)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM rows").Scan(&seen); err != nil || seen != 1 {
		t.Errorf("a read after settledAt: %d rows (%v); want the 1 committed before T", seen, err)
	}
	if err := <-committed; err != nil {
		t.Errorf("the INSERT: %v", err)
	}
}
