package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
)

// Point-in-time recovery of a Patroni cluster: both nodes archive into one
// pgBackRest stanza, a full backup is taken from the primary, rows are
// committed before and after a point T, and the cluster is restored to T
// Patroni's way (bootstrapped again from the backup, the standby copied
// from the new primary): every row committed before T is back, none
// after, the cluster is synchronous again and its new timeline archives.
func TestPatroniRestoresToAPointInTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and two Patroni nodes and runs pgBackRest; not run with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	var repo *engine.PgBackRest
	pc, p := startPatroni(ctx, t, "kvengine-patroni-pitr-", func(dir string, pc *engine.Patroni) {
		repo = &engine.PgBackRest{Stanza: "kvtest", Dir: filepath.Join(dir, "backrest"), ArchiveTimeout: 5 * time.Second}
		pc.Archive = repo
	})
	step := func(what string, fn func() error) {
		t.Helper()
		began := time.Now()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %s", what, time.Since(began).Round(10*time.Millisecond))
	}
	url := pc.DatabaseURL("kv", "kv", "kvdb")
	step("a primary and its synchronous standby", func() error {
		if err := pc.WaitPrimary(ctx, "kv", "kv", "kvdb", 2*time.Minute); err != nil {
			return err
		}
		waitSynchronous(ctx, t, pc)
		return nil
	})
	step("stanza-create", func() error { return repo.CreateStanza(ctx) })
	step("full backup (from the primary)", func() error { return repo.Backup(ctx, "full") })
	// pgBackRest keeps a backup's stop time in whole seconds and restores
	// to T only from a backup that stopped before T's second: the rows
	// before T start past that second.
	backed, err := repo.Info(ctx)
	if err != nil || len(backed.Backups) != 1 {
		t.Fatalf("pgbackrest info after the backup: %+v, %v", backed, err)
	}
	time.Sleep(time.Until(backed.Backups[0].Stop.Add(time.Second + 100*time.Millisecond)))

	db := connect(ctx, t, url)
	exec(ctx, t, db, "CREATE TABLE rows (n int PRIMARY KEY)")
	insert := func(from, to int) {
		t.Helper()
		for n := from; n <= to; n++ {
			if _, err := db.Exec(ctx, "INSERT INTO rows VALUES ($1)", n); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(1, 50)
	time.Sleep(20 * time.Millisecond)
	target := time.Now()
	time.Sleep(20 * time.Millisecond)
	insert(51, 100)
	step("check (the WAL past T archived)", func() error { return repo.Check(ctx) })
	db.Close(ctx)

	var res engine.PatroniRestore
	restoring := time.Now()
	step("restore to T (Patroni bootstrapped from the backup)", func() error {
		res, err = pc.Restore(ctx, p.Stack().Supervisor(), target)
		return err
	})
	t.Logf("of which: nodes stopped and the cluster removed from etcd %s, bootstrap from the backup to a primary %s",
		res.Stopped.Sub(restoring).Round(10*time.Millisecond), res.Primary.Sub(res.Stopped).Round(10*time.Millisecond))
	if len(res.Aside) != 2 {
		t.Errorf("data directories moved aside: %v, want both nodes'", res.Aside)
	}
	for _, d := range res.Aside {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	step("synchronous again (the standby copied from the new primary)", func() error {
		waitSynchronous(ctx, t, pc)
		return nil
	})
	db = connect(ctx, t, url)
	var count, lowest, highest int
	if err := db.QueryRow(ctx, "SELECT count(*), min(n), max(n) FROM rows").Scan(&count, &lowest, &highest); err != nil {
		t.Fatal(err)
	}
	if count != 50 || lowest != 1 || highest != 50 {
		t.Errorf("restored to T: %d rows, %d..%d; want the 50 committed before T (1..50)", count, lowest, highest)
	}
	members, err := pc.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Timeline < 2 {
			t.Errorf("%s on timeline %d after the restore, want a new one", m.Name, m.Timeline)
		}
	}
	// The new timeline archives into the same stanza, and is backed up.
	step("check after the restore", func() error { return repo.Check(ctx) })
	step("incremental backup of the new timeline", func() error { return repo.Backup(ctx, "incr") })
}
