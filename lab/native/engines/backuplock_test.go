package engines

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kvstack/kvstack/internal/engine"
)

// make backup while the scheduler's backup runs (issue 21): pgBackRest
// fails at once on the stanza's lock (exit code 50) and has no option to
// wait. With the lock held the way pgBackRest holds it (an flock on
// lock-path/STANZA-backup.lock naming the holder's pid), BackupNow says a
// backup runs and who holds it, waits, then takes its own; with no wait it
// fails at once naming the holder; and the scheduler's backup, finding the
// lock held (make backup's), is counted busy, not failed, and taken at the
// next tick.
func TestBackupWaitsForTheStanzaLock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and runs pgBackRest; not run with -short (make test runs it)")
	}
	// Four backups: about 30 s on a quiet machine, over 3 min at a load of 45.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ports, err := engine.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvbackuplock-test-")
	if err != nil {
		t.Fatal(err)
	}
	repo := &engine.PgBackRest{Dir: filepath.Join(dir, "backrest"), ArchiveTimeout: 5 * time.Second, RetentionFull: 10}
	p, err := engine.Start(ctx, dir, testLog{t}, &engine.Postgres{Port: ports[0], Dir: filepath.Join(dir, "pg"), Archive: repo})
	if err != nil {
		t.Fatalf("starting a private PostgreSQL that archives with pgBackRest (make setup-all installs pgbackrest): %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
		_ = os.RemoveAll(dir)
	})

	// Right after make up: no stanza yet, a backup holds the lock.
	const held = 3 * time.Second
	var log bytes.Buffer
	release := holdLock(t, repo)
	time.AfterFunc(held, release)
	began := time.Now()
	waited, err := BackupNow(ctx, repo, "full", time.Minute, &log)
	if err != nil {
		t.Fatalf("make backup while a backup holds the lock for %s: %v\n%s", held, err, log.String())
	}
	took := time.Since(began)
	if waited <= 0 || waited > took {
		t.Errorf("make backup says it waited %s of its %s, the lock held %s", waited, took, held)
	}
	t.Logf("make backup, the lock held %s: %s\n%s", held, took.Round(10*time.Millisecond), log.String())
	if took < held {
		t.Errorf("make backup ended after %s, before the holder released the lock (%s)", took, held)
	}
	for _, want := range []string{"the stanza is locked by", fmt.Sprintf("pid %d", os.Getpid()), "waiting"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("make backup's output does not say %q:\n%s", want, log.String())
		}
	}
	if info, err := repo.Info(ctx); err != nil || len(info.Backups) != 1 {
		t.Fatalf("after make backup: %+v, %v; want one backup", info, err)
	}

	// A real backup in progress (pgBackRest's own lock file): make backup
	// names it, waits, and takes its own after it.
	scheduled := make(chan error, 1)
	go func() { scheduled <- repo.Backup(ctx, "full") }()
	var h engine.LockHolder
	for ok := false; !ok; {
		if h, ok = repo.Holder(); !ok {
			select {
			case err := <-scheduled:
				t.Fatalf("the first backup ended (%v) before its lock was seen", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	if !strings.Contains(h.Command, "pgbackrest") || !strings.Contains(h.Command, "backup") {
		t.Errorf("the lock's holder, a pgbackrest backup, read as %+v", h)
	}
	log.Reset()
	if _, err := BackupNow(ctx, repo, "full", time.Minute, &log); err != nil {
		t.Fatalf("make backup during a backup: %v\n%s", err, log.String())
	}
	if err := <-scheduled; err != nil {
		t.Fatalf("the backup make backup waited for: %v", err)
	}
	t.Logf("make backup during a pgbackrest backup:\n%s", log.String())
	if !strings.Contains(log.String(), "the stanza is locked by pgbackrest") {
		t.Errorf("make backup did not name the pgbackrest backup it waited for:\n%s", log.String())
	}
	if info, err := repo.Info(ctx); err != nil || len(info.Backups) != 3 {
		t.Fatalf("after both: %+v, %v; want three backups", info, err)
	}

	// No wait: refused at once, naming the holder.
	release = holdLock(t, repo)
	log.Reset()
	began = time.Now()
	_, err = BackupNow(ctx, repo, "full", 0, &log)
	release()
	if l, ok := engine.IsLocked(err); !ok || l.Holder.PID != os.Getpid() {
		t.Fatalf("make backup -wait=0 with the lock held: %v, want a LockedError naming pid %d", err, os.Getpid())
	}
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("make backup -wait=0 took %s to refuse", took)
	}
	t.Logf("make backup -wait=0, the lock held: %v", err)

	// Interrupted while it waits (Ctrl-C): it says so, not that the wait
	// ran out.
	release = holdLock(t, repo)
	interrupted, stop := context.WithTimeout(ctx, 2*time.Second)
	_, err = BackupNow(interrupted, repo, "full", time.Minute, &log)
	stop()
	release()
	if err == nil || !strings.Contains(err.Error(), "interrupted") || strings.Contains(err.Error(), "still in progress") {
		t.Errorf("make backup interrupted while it waits: %v, want it to say it was interrupted", err)
	}

	// The scheduler, make backup holding the lock: busy, not failed; its
	// next tick takes the backup.
	b := NewBackups(repo, time.Nanosecond, 24*time.Hour, time.Hour, testLog{t})
	release = holdLock(t, repo)
	kind := b.Tick(ctx, time.Now())
	release()
	if got := count(b.runs.WithLabelValues(kind, "failed")); got != 0 {
		t.Errorf("the scheduler's %q backup, the lock held: counted failed %v times, want 0", kind, got)
	}
	if got := count(b.runs.WithLabelValues(kind, "busy")); got != 1 {
		t.Errorf("the scheduler's %q backup, the lock held: counted busy %v times, want 1", kind, got)
	}
	if kind = b.Tick(ctx, time.Now()); count(b.runs.WithLabelValues(kind, "ok")) != 1 {
		t.Errorf("the scheduler's next tick, the lock free: no %q backup ok", kind)
	}
}

// holdLock takes the stanza's backup lock as pgBackRest does (an flock on
// its lock file, which names the holder's pid and exec id) and returns
// its release (remove, then close, as pgBackRest does).
func holdLock(t *testing.T, repo *engine.PgBackRest) (release func()) {
	t.Helper()
	path := filepath.Join(repo.LockPath(), "kvstack-backup.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("flock %s: %v", path, err)
	}
	// pgBackRest runs as postgres and must open the file to find it held.
	if u, err := user.Lookup("postgres"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = f.Chown(uid, gid)
	}
	if _, err := fmt.Fprintf(f, "%d\n%d-test\n", os.Getpid(), os.Getpid()); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = os.Remove(path)
			_ = f.Close()
		})
	}
}

func count(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Logf("%s", bytes.TrimRight(b, "\n"))
	return len(b), nil
}
