package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/engine"
)

// The point-in-time recovery tests' shared steps: the same rows around T,
// the same wait past the backup, the same check of what came back.

// timedSteps returns step, which runs fn, fails the test on its error and
// logs how long it took.
func timedSteps(t *testing.T) func(what string, fn func() error) {
	return func(what string, fn func() error) {
		t.Helper()
		began := time.Now()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %s", what, time.Since(began).Round(10*time.Millisecond))
	}
}

// waitPastTheBackup waits out the second the repository's one backup
// stopped in. pgBackRest keeps a backup's stop time in whole seconds and
// restores to T only from a backup that stopped before T's second: T
// within the backup's last second finds no backup (exit 75). The rows
// before T start past that second.
func waitPastTheBackup(ctx context.Context, t *testing.T, repo *engine.PgBackRest) {
	t.Helper()
	backed, err := repo.Info(ctx)
	if err != nil || len(backed.Backups) != 1 {
		t.Fatalf("pgbackrest info after the backup: %+v, %v", backed, err)
	}
	time.Sleep(time.Until(backed.Backups[0].Stop.Add(time.Second + 100*time.Millisecond)))
}

// rowsAroundT creates table rows on conn and commits rows 1..50, then
// notes T, then commits rows 51..100: T, which it returns, lies between.
func rowsAroundT(ctx context.Context, t *testing.T, conn *pgx.Conn) time.Time {
	t.Helper()
	exec(ctx, t, conn, "CREATE TABLE rows (n int PRIMARY KEY)")
	insert := func(from, to int) {
		t.Helper()
		for n := from; n <= to; n++ {
			if _, err := conn.Exec(ctx, "INSERT INTO rows VALUES ($1)", n); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(1, 50)
	time.Sleep(20 * time.Millisecond)
	target := time.Now()
	time.Sleep(20 * time.Millisecond)
	insert(51, 100)
	return target
}

// wantRestoredToT checks that exactly the rows committed before T (1..50)
// came back.
func wantRestoredToT(ctx context.Context, t *testing.T, conn *pgx.Conn) {
	t.Helper()
	var count, lowest, highest int
	if err := conn.QueryRow(ctx, "SELECT count(*), min(n), max(n) FROM rows").Scan(&count, &lowest, &highest); err != nil {
		t.Fatal(err)
	}
	if count != 50 || lowest != 1 || highest != 50 {
		t.Errorf("restored to T: %d rows, %d..%d; want the 50 committed before T (1..50)", count, lowest, highest)
	}
}
