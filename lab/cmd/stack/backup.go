package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// backupsPriority starts the backup scheduler with the exporters, once
// PostgreSQL (1) answers and the database is migrated.
const backupsPriority = 30

// errNoPITR is the answer of backup and restore on a stack without
// engines of its own.
var errNoPITR = errors.New("this stack has no point-in-time recovery: it uses the machine's shared PostgreSQL (KV_ENGINES=shared), " +
	"which kvstack never reconfigures (archive_mode needs its restart); run the stack with its own engines, KV_ENGINES=private make up " +
	"(docs/OPERATIONS.md, Backups and point-in-time recovery)")

// backupsProgram runs `bin/stack backups`, the scheduler, with the
// stack's settings; healthy when it serves /metrics.
func backupsProgram(s *native.Settings, exe string) supervisor.Program {
	addr := s.Get("BACKUP_ADDR")
	return supervisor.Program{
		Name: "backups", Command: []string{exe, "backups"}, Env: s.Resolved(), Dir: s.Root,
		Log: s.LogFile("backups"), StopWait: s.StopTimeout(), Priority: backupsPriority,
		Addr: addr, Health: supervisor.HTTPProbe{Addr: addr, Path: "/metrics"}, Binary: exe,
	}
}

// pitr tells whether this stack archives its PostgreSQL.
func (c *cli) pitr() bool {
	return c.engines.Postgres != nil && c.engines.Postgres.Archive != nil
}

// scheduleBackups is the scheduler's process.
func (c *cli) scheduleBackups(ctx context.Context) error {
	if !c.pitr() {
		return errNoPITR
	}
	s := c.s
	b := engines.NewBackups(c.engines.Postgres.Archive, s.Duration("KV_BACKUP_INTERVAL"), s.Duration("KV_BACKUP_FULL_INTERVAL"),
		s.Duration("KV_BACKUP_MAX_AGE"), os.Stdout)
	ln, err := net.Listen("tcp", s.Get("BACKUP_ADDR"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Printf("backups: repository %s, a backup when the newest is %s old (full every %s); /metrics on %s\n",
		c.engines.Postgres.Archive.RepoPath(), s.Get("KV_BACKUP_INTERVAL"), s.Get("KV_BACKUP_FULL_INTERVAL"), ln.Addr())
	return b.Run(ctx)
}

// backup takes a backup now (make backup).
func (c *cli) backup(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	kind := fs.String("type", "full", "full, diff (changes since the last full) or incr (since the last backup)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2, usageError{}
	}
	if !c.pitr() {
		return 1, errNoPITR
	}
	repo := c.engines.Postgres.Archive
	began := time.Now()
	if err := repo.CreateStanza(ctx); err != nil {
		return 1, fmt.Errorf("%w (is the stack up? make up)", err)
	}
	if err := repo.Backup(ctx, *kind); err != nil {
		return 1, err
	}
	info, err := repo.Info(ctx)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(c.log, "==> %s backup in %s into %s\n", *kind, time.Since(began).Round(100*time.Millisecond), repo.RepoPath())
	printBackups(info)
	return 0, nil
}

func printBackups(info engine.RepoInfo) {
	for _, b := range info.Backups {
		fmt.Printf("%-36s %-4s  %s → %s  %d MB\n", b.Label, b.Type, b.Start.UTC().Format(time.RFC3339), b.Stop.UTC().Format(time.RFC3339), b.Size>>20)
	}
	if len(info.Backups) > 0 {
		fmt.Printf("restorable: any time from %s (the oldest backup's end) up to the newest archived WAL segment, %s\n",
			info.Backups[0].Stop.UTC().Format(time.RFC3339), info.WALMax)
	}
}

// restore is make restore TO="<timestamp>": it asks for a confirmation
// unless -yes.
func (c *cli) restore(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	to := fs.String("to", "", "the point in time: RFC 3339 (2026-12-06T14:30:00Z, 2026-12-06T15:30:00.5+01:00) or \"2026-12-06 14:30:00\" (UTC)")
	yes := fs.Bool("yes", false, "do not ask for a confirmation (non-interactive use)")
	keep := fs.Bool("keep-aside", true, "keep the old data directory beside the restored one")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *to == "" {
		return 2, usageError{}
	}
	if !c.pitr() {
		return 1, errNoPITR
	}
	target, err := ParseTarget(*to)
	if err != nil {
		return 2, err
	}
	if !c.stack.Supervisor().Running(ctx) {
		return 1, errors.New("the stack is down: make up first (the restore stops and starts its processes itself)")
	}
	if !*yes && !confirm(target, c.s) {
		return 1, errors.New("not confirmed: nothing was changed")
	}
	// The scheduler stops too: a backup must not start while PostgreSQL
	// is away.
	r := engines.Restore{Settings: c.s, Engines: c.engines, Stack: c.stack, Apps: []string{"api1", "api2", "consumer", "backups"}, Log: c.log, KeepAside: *keep}
	res, err := r.Run(ctx, target)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(c.log, "==> restored to %s in %s (pgBackRest %s, replay and promotion %s); %d queued messages purged, cache purged\n",
		engine.FormatTarget(target), res.Ready.Sub(res.Began).Round(100*time.Millisecond),
		res.Restored.Sub(res.AppsStopped).Round(100*time.Millisecond), res.Promoted.Sub(res.Restored).Round(100*time.Millisecond), res.Purged)
	if latest, err := engines.LatestWriteBefore(ctx, c.engines.Postgres.URL("postgres", c.engines.Postgres.Password, "kvstack"), target); err == nil && !latest.IsZero() {
		fmt.Fprintf(c.log, "==> newest write kept: %s (%s before the target)\n", latest.UTC().Format(time.RFC3339Nano), target.Sub(latest).Round(time.Millisecond))
	}
	if res.Aside != "" {
		fmt.Fprintf(c.log, "==> the old data directory is in %s: remove it once the restore is judged good\n", res.Aside)
	}
	fmt.Fprintln(c.log, "==> take a full backup of the new timeline: make backup")
	return 0, nil
}

// ParseTarget reads a restore target: RFC 3339, or "YYYY-MM-DD HH:MM:SS[.f]"
// taken as UTC.
func ParseTarget(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("TO=%q: want RFC 3339 (2026-12-06T14:30:00Z) or \"2026-12-06 14:30:00\" (UTC)", s)
}

// confirm asks the operator to type the word restore.
func confirm(target time.Time, s *native.Settings) bool {
	fmt.Fprintf(os.Stderr, `This restores the stack of %s to %s:
  every write applied after that point is LOST (PostgreSQL goes back to it),
  the work queues are purged, the cache is emptied, api1, api2, the consumer
  and the backup scheduler stop meanwhile. The old data directory is kept aside.
Type "restore" to go on: `, s.Dir, target.UTC().Format(time.RFC3339Nano))
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	return strings.TrimSpace(line) == "restore"
}
