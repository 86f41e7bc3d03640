package engines

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/native"
)

// Restore brings a stack with engines of its own (KV_ENGINES=private, or
// the HA topology) back to a point in time with pgBackRest
// (docs/OPERATIONS.md, Restore to a point in time). In order:
//
//  1. while PostgreSQL still answers, its WAL up to now is archived
//     (pgbackrest check), so that the target can be reached;
//  2. the API replicas and the consumers stop (gracefully): nothing is
//     served or applied meanwhile, and the consumers hand their
//     unacknowledged messages back to the queues;
//  3. the work queues are purged: a message still queued was accepted after
//     the target, unless the consumers lagged by more than the time since
//     the target; either way it is not in the database as it was at the
//     target, and applying it would bring back a write newer than the
//     recovery point. The dead-letter queues are left to the operator;
//  4. the cache's keys are purged (Cache.Purge, the prefix's keys): no
//     value newer than the target can be served from Redis;
//  5. PostgreSQL stops, its data directory is moved aside, pgBackRest
//     restores the newest backup before the target and PostgreSQL replays
//     the archived WAL up to the target, then promotes a new timeline
//     (Database.Rebuild: on the HA topology, Patroni's cluster is
//     bootstrapped anew from the backup and its standby copied from the
//     new primary);
//  6. the replicas and consumers start again and answer.
type Restore struct {
	Settings *native.Settings
	Database Database
	Stack    *supervisor.Stack
	// Apps are the processes that stop during the restore: every API
	// replica and consumer of the stack, and the backup scheduler when
	// one runs.
	Apps []string
	Log  io.Writer
	// KeepAside keeps the old data directory (NAME.before-restore-<time>)
	// for the operator to remove; else it is removed once the restored
	// server answers.
	KeepAside bool
}

// RestoreApps are the programs a restore stops and starts again: the API
// replicas, the consumers and the backup scheduler (a backup must not
// start while PostgreSQL is away); not a program the stack leaves to be
// started by hand (Manual), which a restore must not start.
func RestoreApps(programs []supervisor.Program) []string {
	var names []string
	for _, p := range programs {
		if !p.Manual && (strings.HasPrefix(p.Name, "api") || strings.HasPrefix(p.Name, "consumer") || p.Name == "backups") {
			names = append(names, p.Name)
		}
	}
	return names
}

// RestoreResult is what a restore did, with the time of each step.
type RestoreResult struct {
	Target time.Time
	// Archived tells whether step 1 ran (PostgreSQL answered).
	Archived bool
	// Began, AppsStopped, Restored (Database.Rebuild's restored), Promoted
	// (PostgreSQL takes writes), Ready (every app answers).
	Began, AppsStopped, Restored, Promoted, Ready time.Time
	Purged                                        int // queued messages purged
	// Aside are the data directories moved aside (kept with KeepAside).
	Aside []string
}

// Database is the PostgreSQL a restore rebuilds: a single server
// (SingleDatabase) or a Patroni cluster (ClusterDatabase).
type Database interface {
	// Archive is its pgBackRest repository (nil: it does not archive).
	Archive() *engine.PgBackRest
	// Writable tells whether a primary takes writes now.
	Writable(ctx context.Context) bool
	// Rebuild stops it, restores it to target and starts it; it returns
	// once a primary takes writes, with the data directories moved aside
	// and the moment its servers were stopped and the restore handed to
	// the engine (after pgBackRest's restore for a single server; before
	// it for a cluster, whose Patroni runs it as its bootstrap).
	Rebuild(ctx context.Context, sup *supervisor.Supervisor, target time.Time) (aside []string, restored time.Time, err error)
	// Log is where to look when the rebuild fails.
	Log() string
}

// SingleDatabase is a single-node stack's PostgreSQL.
type SingleDatabase struct{ *engine.Postgres }

func (d SingleDatabase) Archive() *engine.PgBackRest { return d.Postgres.Archive }

func (d SingleDatabase) Writable(ctx context.Context) bool {
	primary, err := d.IsPrimary(ctx)
	return err == nil && primary
}

func (d SingleDatabase) Log() string { return d.Program().Log }

// Rebuild stops the server, restores its data directory and starts it;
// PostgreSQL replays the WAL to the target and promotes itself.
func (d SingleDatabase) Rebuild(ctx context.Context, sup *supervisor.Supervisor, target time.Time) (aside []string, restored time.Time, err error) {
	name := d.Program().Name
	if err := sup.Stop(ctx, name); err != nil {
		return nil, restored, err
	}
	dir, err := d.Postgres.Archive.Restore(ctx, target)
	if dir != "" {
		aside = []string{dir}
	}
	if err != nil {
		return aside, restored, err
	}
	restored = time.Now()
	if err := sup.Start(ctx, name, false); err != nil {
		return aside, restored, err
	}
	return aside, restored, waitWritable(ctx, d)
}

// ClusterDatabase is the HA topology's PostgreSQL, kept by Patroni.
type ClusterDatabase struct{ *engine.Patroni }

func (d ClusterDatabase) Archive() *engine.PgBackRest { return d.Patroni.Archive }

func (d ClusterDatabase) Writable(ctx context.Context) bool {
	_, err := d.Primary(ctx)
	return err == nil
}

func (d ClusterDatabase) Log() string { return d.Nodes[0].Program().Log }

// Rebuild is Patroni's restore (engine.Patroni.Restore): every node
// stopped, the cluster removed from etcd and bootstrapped again from the
// backup by its first node; the standby is copied from the new primary
// meanwhile (make status shows when it is synchronous again).
func (d ClusterDatabase) Rebuild(ctx context.Context, sup *supervisor.Supervisor, target time.Time) (aside []string, restored time.Time, err error) {
	res, err := d.Restore(ctx, sup, target)
	return res.Aside, res.Stopped, err
}

// ErrNoBackup is a target older than every backup's end.
var ErrNoBackup = errors.New("no backup ended before the target")

// Run restores to target.
func (r Restore) Run(ctx context.Context, target time.Time) (RestoreResult, error) {
	res := RestoreResult{Target: target, Began: time.Now()}
	repo := r.Database.Archive()
	if repo == nil {
		return res, errors.New("this stack's PostgreSQL does not archive (KV_ENGINES=private and the HA topology have pgBackRest)")
	}
	if target.After(res.Began) {
		return res, fmt.Errorf("target %s is in the future", engine.FormatTarget(target))
	}
	info, err := repo.Info(ctx)
	if err != nil {
		return res, err
	}
	if !backupBefore(info, target) {
		return res, fmt.Errorf("%w %s (%d backups: make backup takes one)", ErrNoBackup, engine.FormatTarget(target), len(info.Backups))
	}
	sup := r.Stack.Supervisor()
	if r.Database.Writable(ctx) {
		r.logf("archiving the WAL written so far (pgbackrest check)")
		if err := repo.Check(ctx); err != nil {
			return res, err
		}
		res.Archived = true
	} else {
		r.logf("PostgreSQL does not answer: what it wrote since its last archived WAL segment is lost (at most archive_timeout, KV_ARCHIVE_TIMEOUT, of writes)")
	}
	r.logf("stopping %v", r.Apps)
	if err := r.each(func(name string) error { return sup.Stop(ctx, name) }); err != nil {
		return res, err
	}
	res.AppsStopped = time.Now()
	if res.Purged, err = r.purgeQueues(ctx); err != nil {
		return res, err
	}
	r.logf("purged %d queued messages", res.Purged)
	if err := r.purgeCache(ctx); err != nil {
		return res, err
	}
	r.logf("cache purged")
	r.logf("restoring to %s", engine.FormatTarget(target))
	res.Aside, res.Restored, err = r.Database.Rebuild(ctx, sup, target)
	if err != nil {
		return res, fmt.Errorf("%w (see %s)", err, r.Database.Log())
	}
	res.Promoted = time.Now()
	r.logf("PostgreSQL restored, replayed to the target and promoted in %s", res.Promoted.Sub(res.AppsStopped).Round(10*time.Millisecond))
	if !r.KeepAside {
		for _, dir := range res.Aside {
			if err := os.RemoveAll(dir); err != nil {
				return res, err
			}
		}
		res.Aside = nil
	}
	err = r.each(func(name string) error {
		if err := sup.Start(ctx, name, false); err != nil {
			return err
		}
		return r.Stack.WaitHealthy(ctx, name)
	})
	res.Ready = time.Now()
	r.logf("%v answer again", r.Apps)
	return res, err
}

// each runs fn for every app at once: each replica drains for its own
// bound, and they need not wait for each other.
func (r Restore) each(fn func(name string) error) error {
	errs := make([]error, len(r.Apps))
	var wg sync.WaitGroup
	for i, name := range r.Apps {
		wg.Go(func() { errs[i] = fn(name) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r Restore) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, "==> restore: "+format+"\n", args...)
	}
}

func backupBefore(info engine.RepoInfo, target time.Time) bool {
	for _, b := range info.Backups {
		if !b.Stop.After(target) {
			return true
		}
	}
	return false
}

// purgeQueues empties the work queues (not their dead-letter queues).
func (r Restore) purgeQueues(ctx context.Context) (int, error) {
	cfg, err := config.LoadFrom[rabbitmq.Config](r.Settings.Resolved())
	if err != nil {
		return 0, err
	}
	conn, err := DialAMQP(cfg.URL, cfg.TLSCAFile)
	if err != nil {
		return 0, fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	total := 0
	for _, q := range []string{cfg.QueueAdd, cfg.QueueDel} {
		n, err := ch.QueuePurge(q, false)
		if err != nil {
			return total, fmt.Errorf("purge %s: %w", q, err)
		}
		total += n
	}
	return total, ctx.Err()
}

// purgeCache removes the cache's keys (its prefix's) from Redis.
func (r Restore) purgeCache(ctx context.Context) error {
	cfg, err := config.LoadFrom[redis.Config](r.Settings.Resolved())
	if err != nil {
		return err
	}
	client, err := redis.NewClient(cfg, nil)
	if err != nil {
		return err
	}
	defer client.Close()
	return redis.NewCache(client, cfg, nil).Purge(ctx)
}

// waitWritable waits until PostgreSQL has replayed to the target and
// promoted itself.
func waitWritable(ctx context.Context, d Database) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for !d.Writable(ctx) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("PostgreSQL not promoted after the restore: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// LatestWriteBefore is the newest kv_store write timestamp at or before t,
// for a restore's report.
func LatestWriteBefore(ctx context.Context, url string, t time.Time) (time.Time, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close(ctx)
	var latest *time.Time
	err = conn.QueryRow(ctx, "SELECT max(last_updated) FROM kv_store WHERE last_updated <= $1", t).Scan(&latest)
	if err != nil || latest == nil {
		return time.Time{}, err
	}
	return *latest, nil
}
