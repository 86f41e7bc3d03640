package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
)

// Point-in-time recovery of a private PostgreSQL with pgBackRest: a full
// backup, rows committed before and after a point T, the data directory
// lost, a restore to T: every row committed before T is back, none after,
// and the restored server archives again.
func TestPgBackRestRestoresToAPointInTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and runs pgBackRest; not run with -short (make test runs it)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(3*time.Minute))
	defer cancel()
	ports, err := engine.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvpitr-test-")
	if err != nil {
		t.Fatal(err)
	}
	repo := &engine.PgBackRest{Dir: filepath.Join(dir, "backrest"), ArchiveTimeout: 5 * time.Second}
	pg := &engine.Postgres{Port: ports[0], Dir: filepath.Join(dir, "pg"), Archive: repo}
	p, err := engine.Start(ctx, dir, testLog{t}, pg)
	if err != nil {
		t.Fatalf("starting a private PostgreSQL that archives with pgBackRest (make setup-all installs pgbackrest): %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	step := timedSteps(t)
	step("stanza-create", func() error { return repo.CreateStanza(ctx) })
	step("full backup", func() error { return repo.Backup(ctx, "full") })
	waitPastTheBackup(ctx, t, repo)
	url := pg.URL("postgres", "", "postgres")
	db := connect(ctx, t, url)
	target := rowsAroundT(ctx, t, db)
	db.Close(ctx)
	step("check (the WAL past T archived)", func() error { return repo.Check(ctx) })

	info, err := repo.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != "ok" || len(info.Backups) != 1 || info.Backups[0].Type != "full" || info.WALMax == "" {
		t.Fatalf("pgbackrest info: %+v, want status ok, one full backup, archived WAL", info)
	}

	// The accident: the server gone with its data directory.
	if err := p.Stop(ctx, "postgres"); err != nil {
		t.Fatal(err)
	}
	var aside string
	step("restore to T", func() error { aside, err = repo.Restore(ctx, target); return err })
	if aside == "" {
		t.Fatal("the old data directory was not moved aside")
	}
	if err := os.RemoveAll(aside); err != nil {
		t.Fatal(err)
	}
	step("start, replay to T, promote", func() error {
		if err := p.Start(ctx, "postgres"); err != nil {
			return err
		}
		for {
			if primary, err := pg.IsPrimary(ctx); err == nil && primary {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("not promoted: %w", ctx.Err())
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	wantRestoredToT(ctx, t, connect(ctx, t, url))
	// The new timeline archives into the same stanza.
	step("check after the restore", func() error { return repo.Check(ctx) })
}
