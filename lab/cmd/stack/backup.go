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
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
func backupsProgram(s *native.Settings) supervisor.Program {
	exe, err := os.Executable()
	if err != nil {
		exe = filepath.Join(s.Root, "bin", "stack")
	}
	addr := s.Get("BACKUP_ADDR")
	return supervisor.Program{
		Name: "backups", Command: []string{exe, "backups"}, Env: s.Resolved(), Dir: s.Root,
		Log: s.LogFile("backups"), StopWait: s.StopTimeout(), Priority: backupsPriority,
		Addr: addr, Health: supervisor.HTTPProbe{Addr: addr, Path: "/metrics"}, Binary: exe,
	}
}

// repositoryOwner is the user the backup scheduler runs as: postgres,
// whom pgBackRest runs as, owner of its repository, lock, log and spool
// paths and of PostgreSQL's data directories. Not KV_PROCESS_USER: a
// backup reads the data directory and expires the WAL PostgreSQL archives
// as postgres, rights the API replicas' user must never have.
const repositoryOwner = "postgres"

// dropPrivileges makes this process name (uid, gid and groups, every
// thread) when it runs as root. The scheduler starts as root, not as a
// supervisord user=: the stack's settings it loads name the engines'
// passwords, in a file root alone reads; by then its pgBackRest
// configuration is written, and it schedules and serves as name.
func dropPrivileges(name string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("user %s (from its Debian package): %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	var groups []int
	ids, err := u.GroupIds()
	if err != nil {
		return err
	}
	for _, id := range ids {
		g, _ := strconv.Atoi(id)
		groups = append(groups, g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", groups, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	return os.Setenv("HOME", u.HomeDir)
}

// database is this stack's PostgreSQL when it archives with pgBackRest:
// the single node's (KV_ENGINES=private) or the HA topology's Patroni
// cluster; nil on the shared PostgreSQL.
func (c *cli) database() engines.Database {
	switch {
	case c.ha != nil:
		return engines.ClusterDatabase{Patroni: c.ha.Postgres}
	case c.engines.Postgres != nil && c.engines.Postgres.Archive != nil:
		return engines.SingleDatabase{Postgres: c.engines.Postgres}
	}
	return nil
}

// apps are the processes a restore stops and starts again
// (engines.RestoreApps).
func (c *cli) apps() []string { return engines.RestoreApps(c.stack.Programs) }

// scheduleBackups is the scheduler's process.
func (c *cli) scheduleBackups(ctx context.Context) error {
	db := c.database()
	if db == nil {
		return errNoPITR
	}
	if err := dropPrivileges(repositoryOwner); err != nil {
		return err
	}
	s := c.s
	b := engines.NewBackups(db.Archive(), s.Duration("KV_BACKUP_INTERVAL"), s.Duration("KV_BACKUP_FULL_INTERVAL"),
		s.Duration("KV_BACKUP_MAX_AGE"), os.Stdout)
	ln, err := net.Listen("tcp", s.Get("BACKUP_ADDR"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Printf("backups: repository %s, a backup when the newest is %s old (full every %s); /metrics on %s\n",
		db.Archive().RepoPath(), s.Get("KV_BACKUP_INTERVAL"), s.Get("KV_BACKUP_FULL_INTERVAL"), ln.Addr())
	return b.Run(ctx)
}

// backupWait is how long make backup waits, by default, for a backup in
// progress (the scheduler's, taken at once after make up) to end.
const backupWait = 30 * time.Minute

// backup takes a backup now (make backup).
func (c *cli) backup(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	kind := fs.String("type", "full", "full, diff (changes since the last full) or incr (since the last backup)")
	wait := fs.Duration("wait", backupWait, "how long to wait for a backup in progress (the scheduler's) to end first; 0: fail at once")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2, usageError{}
	}
	db := c.database()
	if db == nil {
		return 1, errNoPITR
	}
	if !c.stack.Supervisor().Running(ctx) {
		return 1, errors.New("the stack is down: make up first (a backup reads its running PostgreSQL)")
	}
	repo := db.Archive()
	began := time.Now()
	waited, err := engines.BackupNow(ctx, repo, *kind, *wait, c.log)
	if err != nil {
		return 1, err
	}
	took := time.Since(began) - waited
	info, err := repo.Info(ctx)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(c.log, "==> %s backup in %s into %s\n", *kind, took.Round(100*time.Millisecond), repo.RepoPath())
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
	db := c.database()
	if db == nil {
		return 1, errNoPITR
	}
	target, err := ParseTarget(*to)
	if err != nil {
		return 2, err
	}
	if !c.stack.Supervisor().Running(ctx) {
		return 1, errors.New("the stack is down: make up first (the restore stops and starts its processes itself)")
	}
	if !*yes && !confirm(target, c.s, c.apps()) {
		return 1, errors.New("not confirmed: nothing was changed")
	}
	r := engines.Restore{Settings: c.s, Database: db, Stack: c.stack, Apps: c.apps(), Log: c.log, KeepAside: *keep}
	res, err := r.Run(ctx, target)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(c.log, "==> restored to %s in %s (PostgreSQL stopped and restored %s, then replay and promotion %s); %d queued messages purged, cache purged\n",
		engine.FormatTarget(target), res.Ready.Sub(res.Began).Round(100*time.Millisecond),
		res.Restored.Sub(res.AppsStopped).Round(100*time.Millisecond), res.Promoted.Sub(res.Restored).Round(100*time.Millisecond), res.Purged)
	if latest, err := engines.LatestWriteBefore(ctx, c.s.Get("DATABASE_URL"), target); err == nil && !latest.IsZero() {
		fmt.Fprintf(c.log, "==> newest write kept: %s (%s before the target)\n", latest.UTC().Format(time.RFC3339Nano), target.Sub(latest).Round(time.Millisecond))
	}
	if len(res.Aside) > 0 {
		fmt.Fprintf(c.log, "==> the old data directories are in %s: remove them once the restore is judged good\n", strings.Join(res.Aside, ", "))
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
func confirm(target time.Time, s *native.Settings, apps []string) bool {
	fmt.Fprintf(os.Stderr, `This restores the stack of %s to %s:
  every write applied after that point is LOST (PostgreSQL goes back to it),
  the work queues are purged, the cache is emptied, %s
  stop meanwhile. The old data directories are kept aside.
Type "restore" to go on: `, s.Dir, target.UTC().Format(time.RFC3339Nano), strings.Join(apps, ", "))
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	return strings.TrimSpace(line) == "restore"
}
