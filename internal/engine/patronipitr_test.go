package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
)

// Point-in-time recovery of a Patroni cluster locked as the HA topology's
// (engines.ForHA: TLS alone, a password for Patroni's superuser,
// replication and pg_rewind users, scram-sha-256): both nodes archive into one
// pgBackRest stanza, a full backup is taken from the primary, rows are
// committed before and after a point T, and the cluster is restored to T
// Patroni's way (bootstrapped again from the backup, the standby copied
// from the new primary): every row committed before T is back, none
// after, the cluster is synchronous again and its new timeline archives.
func TestPatroniRestoresToAPointInTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and two Patroni nodes and runs pgBackRest; not run with -short (make test runs it)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(12*time.Minute))
	defer cancel()
	var repo *engine.PgBackRest
	pc, p := startPatroni(ctx, t, "kvengine-patroni-pitr-", func(dir string, pc *engine.Patroni) {
		repo = &engine.PgBackRest{Stanza: "kvtest", Dir: filepath.Join(dir, "backrest"), ArchiveTimeout: 5 * time.Second}
		pc.Archive = repo
		// Locked as engines.ForHA locks the HA topology's cluster.
		certs, err := engine.MakeTLS(filepath.Join(dir, "tls"), "127.0.0.1", "localhost")
		if err != nil {
			t.Fatal(err)
		}
		pc.TLS, pc.Password, pc.ReplicationPassword, pc.RewindPassword = certs, "super-pw", "repl-pw", "rewind-pw"
	})
	step := timedSteps(t)
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
	waitPastTheBackup(ctx, t, repo)
	db := connect(ctx, t, url)
	target := rowsAroundT(ctx, t, db)
	step("check (the WAL past T archived)", func() error { return repo.Check(ctx) })
	db.Close(ctx)

	var (
		res engine.PatroniRestore
		err error
	)
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
	wantRestoredToT(ctx, t, connect(ctx, t, url))
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
