package engines

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvstack/kvstack/internal/engine"
)

// Backups is the backup scheduler of a stack whose PostgreSQL archives
// with pgBackRest (the stack's process `backups`, bin/stack backups): it
// creates the stanza once PostgreSQL answers, takes a full backup when the
// repository has none, then a differential one whenever the newest backup
// is Interval old, or a full one when the newest full is FullInterval old
// (pgBackRest then expires the oldest full backups past its retention,
// and the WAL only they needed). Its /metrics say how old the newest
// backup is, against MaxAge (BackupTooOld); pg_stat_archiver, through the
// PostgreSQL exporter, says whether the WAL archive keeps up
// (WALArchiveFailing). A backup due while another pgBackRest command
// holds the stanza's lock (make backup's) is counted busy, not failed, and
// taken at a later look.
type Backups struct {
	Repo                           *engine.PgBackRest
	Interval, FullInterval, MaxAge time.Duration
	Log                            io.Writer
	// Every is how often the repository is looked at (default a minute).
	Every time.Duration

	reg                *prometheus.Registry
	newest, newestFull prometheus.Gauge
	repoOK             prometheus.Gauge
	runs               *prometheus.CounterVec
	duration           *prometheus.GaugeVec
}

// NewBackups is a scheduler with its metrics.
func NewBackups(repo *engine.PgBackRest, interval, full, maxAge time.Duration, log io.Writer) *Backups {
	b := &Backups{Repo: repo, Interval: interval, FullInterval: full, MaxAge: maxAge, Log: log, reg: prometheus.NewRegistry()}
	f := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		b.reg.MustRegister(g)
		return g
	}
	b.newest = f("kvstack_backup_newest_timestamp_seconds", "When the newest backup in the pgBackRest repository ended (0: none).")
	b.newestFull = f("kvstack_backup_newest_full_timestamp_seconds", "When the newest full backup in the repository ended (0: none).")
	b.repoOK = f("kvstack_backup_repository_ok", "1 when pgbackrest info reads the stanza and finds it ok, else 0.")
	f("kvstack_backup_max_age_seconds", "KV_BACKUP_MAX_AGE: a newest backup older than this fires BackupTooOld.").Set(maxAge.Seconds())
	f("kvstack_backup_interval_seconds", "KV_BACKUP_INTERVAL: a backup is taken when the newest is this old.").Set(interval.Seconds())
	b.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kvstack_backup_runs_total",
		Help: "Backups the scheduler ran, by type (full, diff) and outcome (ok, failed, busy: not taken, another pgBackRest command such as make backup held the stanza's lock; taken at a later look)."}, []string{"type", "outcome"})
	b.duration = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kvstack_backup_last_duration_seconds",
		Help: "How long the last backup of each type took."}, []string{"type"})
	b.reg.MustRegister(b.runs, b.duration)
	for _, t := range []string{"full", "diff"} {
		for _, o := range []string{"ok", "failed", "busy"} {
			b.runs.WithLabelValues(t, o)
		}
	}
	return b
}

// Handler serves /metrics.
func (b *Backups) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{}))
	return mux
}

// Run schedules backups until ctx ends.
func (b *Backups) Run(ctx context.Context) error {
	every := b.every()
	for stanza := false; ctx.Err() == nil; {
		if !stanza {
			if err := b.Repo.EnsureStanza(ctx); err != nil {
				if l, ok := engine.IsLocked(err); ok {
					b.logf("stanza-create: pgBackRest is busy (%s); again in 5s", l.Holder)
				} else {
					b.logf("stanza-create (PostgreSQL must answer): %v; again in 5s", err)
				}
				sleep(ctx, 5*time.Second)
				continue
			}
			stanza = true
			b.logf("stanza ready in %s", b.Repo.RepoPath())
		}
		b.Tick(ctx, time.Now())
		sleep(ctx, every)
	}
	return nil
}

func (b *Backups) every() time.Duration {
	if b.Every <= 0 {
		return time.Minute
	}
	return b.Every
}

// Tick reads the repository, updates the metrics and takes the backup that
// is due, if any; it returns its type ("" when none was due).
func (b *Backups) Tick(ctx context.Context, now time.Time) string {
	info, err := b.Repo.Info(ctx)
	if err != nil {
		b.repoOK.Set(0)
		b.logf("pgbackrest info: %v", err)
		return ""
	}
	b.observe(info)
	kind := Due(info, now, b.Interval, b.FullInterval)
	if kind == "" {
		return ""
	}
	began := time.Now()
	err = b.Repo.Backup(ctx, kind)
	took := time.Since(began)
	if l, ok := engine.IsLocked(err); ok {
		// make backup's (or another pgBackRest command's): not a failure;
		// the next tick takes the backup if it is still due.
		b.runs.WithLabelValues(kind, "busy").Inc()
		b.logf("%s backup not taken: pgBackRest is busy (%s); again at the next look, in %s", kind, l.Holder, b.every())
		return kind
	}
	if err != nil {
		b.runs.WithLabelValues(kind, "failed").Inc()
		b.logf("%s backup FAILED after %s: %v", kind, took.Round(100*time.Millisecond), err)
		return kind
	}
	b.runs.WithLabelValues(kind, "ok").Inc()
	b.duration.WithLabelValues(kind).Set(took.Seconds())
	b.logf("%s backup in %s", kind, took.Round(100*time.Millisecond))
	if info, err := b.Repo.Info(ctx); err == nil {
		b.observe(info)
	}
	return kind
}

func (b *Backups) observe(info engine.RepoInfo) {
	ok := 0.0
	if info.Status == "ok" {
		ok = 1
	}
	b.repoOK.Set(ok)
	newest, full := Newest(info)
	b.newest.Set(unix(newest))
	b.newestFull.Set(unix(full))
}

// Newest is when the newest backup, and the newest full one, ended (zero
// when there is none).
func Newest(info engine.RepoInfo) (newest, full time.Time) {
	for _, bk := range info.Backups {
		if bk.Stop.After(newest) {
			newest = bk.Stop
		}
		if bk.Type == "full" && bk.Stop.After(full) {
			full = bk.Stop
		}
	}
	return newest, full
}

// Due is the backup to take now: full when there is no full backup or the
// newest is fullInterval old, diff when the newest backup of any kind is
// interval old, else "".
func Due(info engine.RepoInfo, now time.Time, interval, fullInterval time.Duration) string {
	newest, full := Newest(info)
	switch {
	case full.IsZero() || now.Sub(full) >= fullInterval:
		return "full"
	case now.Sub(newest) >= interval:
		return "diff"
	}
	return ""
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func (b *Backups) logf(format string, args ...any) {
	if b.Log != nil {
		fmt.Fprintf(b.Log, "%s backups: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// BackupNow takes a backup of kind now (make backup), creating the
// stanza first if the repository has none yet (right after make up, the
// scheduler may not have). pgBackRest runs one command of a stanza at a
// time and fails at once when another holds the lock: the scheduler's
// backup, a moment after make up. BackupNow then says so on log, with the
// holder, and waits up to wait in all for it to end before it takes its
// own; with no wait, or past it, it returns the *engine.LockedError. It
// returns how long it waited.
func BackupNow(ctx context.Context, repo *engine.PgBackRest, kind string, wait time.Duration, log io.Writer) (time.Duration, error) {
	waiting := func(h engine.LockHolder) {
		fmt.Fprintf(log, "==> the stanza is locked by %s; waiting for it to end (up to %s) before taking this backup\n", h, wait)
	}
	deadline := time.Now().Add(wait)
	var waited time.Duration
	step := func(fn func(context.Context) error) error {
		w, err := repo.WhenFree(ctx, max(0, time.Until(deadline)), waiting, fn)
		waited += w
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after waiting %s for the stanza's lock: %w", waited.Round(100*time.Millisecond), ctx.Err())
		}
		if _, ok := engine.IsLocked(err); ok {
			if wait <= 0 {
				return fmt.Errorf("a backup is in progress: try again once it ends, or wait for it (-wait): %w", err)
			}
			return fmt.Errorf("a backup is still in progress after %s: try again once it ends: %w", wait, err)
		}
		return err
	}
	if err := step(repo.EnsureStanza); err != nil {
		return waited, err
	}
	if err := step(func(ctx context.Context) error { return repo.Backup(ctx, kind) }); err != nil {
		return waited, err
	}
	if waited > 0 {
		fmt.Fprintf(log, "==> waited %s for the lock\n", waited.Round(100*time.Millisecond))
	}
	return waited, nil
}
