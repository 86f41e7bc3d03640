package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/lab/history"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// The disaster-recovery drill (make dr-drill, -mode dr; make dr-drill-ha,
// -mode dr-ha): on a private stack whose PostgreSQL archives with
// pgBackRest, on ports of its own (the single-node stack, or the HA
// topology's, its Patroni cluster archiving into one stanza), for each
// accident: write under load; take a full backup and go on writing; note a
// point T; go on writing; commit the accident; restore to T
// (lab/native/engines.Restore, what make restore runs on either topology);
// then check every key, every read answered after the restore, the cache,
// the consumers and, on the HA topology, that the cluster is whole again.
// The topology is the private stack's (c.ha): the drill itself is one.

// drPorts are the drill's: the chaos ports minus 1000 (29xxx), so that the
// drill and another campaign never share one (TestCampaignPortsApart; the
// chaos ports plus 1000 were the HA campaign's).
var drPorts = shiftPorts(chaosPorts, -1000)

// drHAPorts are the HA drill's: the HA campaign's plus 450, still below
// the ephemeral range (the highest, a port nothing listens on, 32353; the
// Redis nodes' cluster buses 32150-32155), apart from every other
// campaign's.
var drHAPorts = shiftPorts(chaosHAPorts, 450)

func shiftPorts(ports map[string]string, by int) map[string]string {
	out := map[string]string{}
	for k, v := range ports {
		n, _ := strconv.Atoi(v)
		out[k] = strconv.Itoa(n + by)
	}
	return out
}

// drArchiveTimeout is the drill's archive_timeout (KV_ARCHIVE_TIMEOUT; the
// stack's default is 60s): after the data directory is lost, the restore
// needs the WAL past T archived, which the drill waits for.
const drArchiveTimeout = 10 * time.Second

// accident is one the drill commits, a round each.
type accident struct{ name, what string }

// accidents are the drill's on either topology: the data directory lost
// (c.loseData), a table truncated.
func accidents(ha bool) []accident {
	if ha {
		return []accident{
			{"rmdata", "the primary's machine lost (its Patroni and postgres killed -9 together and kept down) with its data directory removed; Patroni promotes the synchronous standby once the leader key expires (ttl), then the restore to T rebuilds both nodes"},
			{"truncate", "TRUNCATE kv_store by the database's owner through the multi-host DATABASE_URL (the primary; the synchronous standby replays it), the cluster left running"},
		}
	}
	return []accident{
		{"rmdata", "PostgreSQL stopped at once (immediate shutdown, as a crash) and its data directory removed"},
		{"truncate", "TRUNCATE kv_store by the database's owner, the server left running"},
	}
}

func startDR(ctx context.Context, root, dir, engineDir string, log io.Writer) (*private, error) {
	return startPrivateOn(ctx, root, dir, engineDir, log, drPorts, true)
}

// startDRHA starts the HA topology's private stack (startHA) on the
// drill's ports, with the drill's archive_timeout.
func startDRHA(ctx context.Context, root, dir, engineDir string, log io.Writer) (*private, error) {
	return startHAOn(ctx, root, dir, engineDir, log, drHAPorts, "KV_ARCHIVE_TIMEOUT="+drArchiveTimeout.String())
}

// drillRound is one accident's figures.
type drillRound struct {
	accident, what string
	keys           int
	target         time.Time
	backupTook     time.Duration
	res            engines.RestoreResult
	// Writes: acknowledged (202) before and after T, other answers.
	acked, ackedBefore, ackedAfter, notAcked int
	// Keys: equal to the state at T, in a key changing around T (A and B
	// differ: either side is right), lost (older than at T, or absent),
	// after (holding a write newer than T), unexplained (no 202 names it).
	same, ambiguous, lost, after, unexplained int
	appliedNoAck                              int // a write answered otherwise than 202, applied
	rpo, rto                                  time.Duration
	// Reads answered after the processes stopped for the restore, and
	// those that returned a state other than the restored one.
	readsAfter, staleReads int
	// The sweep: every key read twice through nginx after the restore;
	// then Redis' entries compared with PostgreSQL.
	sweepReads, sweepStale, staleCache int
	dlq                                int
	writeAfter                         bool // a write and its read after the restore worked
	// failover: on the HA topology, from the primary's loss until the
	// standby answered as the primary; whole: from the restore's start
	// until the clusters were whole again (a leader and its synchronous
	// standby caught up, on the HA topology); appsClean: every process
	// the restore started still the same one, ready, at the end.
	failover, whole time.Duration
	appsClean       bool
	failures        []string
}

func (r *drillRound) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// readLog keeps every read the drill's readers made.
type readLog struct {
	mu  sync.Mutex
	ops []history.Op
}

func (l *readLog) add(o history.Op) {
	l.mu.Lock()
	l.ops = append(l.ops, o)
	l.mu.Unlock()
}

// drillTarget is the make target of the drill on the private stack's
// topology.
func drillTarget(c *private) string {
	if c.ha != nil {
		return "dr-drill-ha"
	}
	return "dr-drill"
}

func drill(ctx context.Context, s settings, c *private) error {
	e, closeEnv, err := newEnv(ctx, s, c)
	if err != nil {
		return err
	}
	defer closeEnv()
	// The stack's scheduler takes its first backup as the stack starts:
	// pgBackRest's lock is then taken; wait for it.
	repo := c.database().Archive()
	if _, err := repo.WhenFree(ctx, 10*time.Minute, nil, repo.EnsureStanza); err != nil {
		return err
	}
	name := drillTarget(c)
	started := time.Now()
	runID := time.Now().UTC().Format("150405")
	var rounds []drillRound
	list := accidents(c.ha != nil)
	for i, a := range list {
		if s.only != "" && !strings.Contains(","+s.only+",", ","+a.name+",") {
			continue
		}
		fmt.Fprintf(os.Stderr, "==> %s: [%d/%d] %s: %s\n", name, i+1, len(list), a.name, a.what)
		r := e.drillRound(ctx, a, fmt.Sprintf("dr-%s-%d-%s", runID, i, a.name))
		fmt.Fprintf(os.Stderr, "==> %s: %s\n", name, r.summary())
		rounds = append(rounds, r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	rep := drillReport{s: s, rounds: rounds, started: started, took: time.Since(started)}
	_ = os.WriteFile(filepath.Join(s.dir, "RELIABILITY-"+s.mode+".md"), []byte(rep.markdown()), 0o644)
	if s.out != "" {
		if err := rep.write(s.out); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "==> %s: wrote %s\n", name, s.out)
	}
	var failed []string
	for _, r := range rounds {
		if len(r.failures) > 0 {
			failed = append(failed, r.accident+": "+strings.Join(r.failures, "; "))
		}
	}
	if len(failed) > 0 {
		return errors.New("checks failed:\n  " + strings.Join(failed, "\n  "))
	}
	fmt.Fprintf(os.Stderr, "==> %s: %d accidents, every check passed (%s)\n", name, len(rounds), time.Since(started).Round(time.Second))
	return nil
}

func (r drillRound) summary() string {
	status := "PASS"
	if len(r.failures) > 0 {
		status = "FAIL: " + strings.Join(r.failures, "; ")
	}
	return fmt.Sprintf("%s: %d keys, %d writes acked before T and %d after; lost %d, after-T %d, unexplained %d; reads after the restore %d (stale %d), sweep stale %d, cache stale %d; RPO %s, RTO %s, whole again %s — %s",
		r.accident, r.keys, r.ackedBefore, r.ackedAfter, r.lost, r.after, r.unexplained, r.readsAfter, r.staleReads, r.sweepStale, r.staleCache,
		r.rpo.Round(time.Millisecond), r.rto.Round(time.Millisecond), r.whole.Round(100*time.Millisecond), status)
}

func (e *env) drillRound(ctx context.Context, a accident, prefix string) (r drillRound) {
	r = drillRound{accident: a.name, what: a.what, keys: e.s.keys}
	keys := make([]string, e.s.keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-k%03d", prefix, i)
	}
	qBefore, err := e.c.queues(ctx)
	if err != nil {
		r.fail("queues: %v", err)
		return r
	}
	led := &ledger{}
	l := &load{nginx: e.s.nginx, client: e.http, keys: keys, pace: e.s.pace, led: led, h: newHistories(prefix)}
	wctx, stopWriters := context.WithCancel(ctx)
	var writers sync.WaitGroup
	for w := range e.s.writers {
		c := l.historyClient(w, &l.h.lww)
		writers.Go(func() { l.writer(wctx, c) })
	}
	defer func() { stopWriters(); writers.Wait() }()
	reads := &readLog{}
	rctx, stopReaders := context.WithCancel(ctx)
	var readers sync.WaitGroup
	for i := range e.s.readers {
		c := &history.Client{ID: 1000 + i, Base: e.s.nginx, HTTP: e.http, Rec: &history.Recorder{}}
		readers.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for rctx.Err() == nil {
				reads.add(c.Get(rctx, keys[rnd.IntN(len(keys))], ""))
				sleepCtx(rctx, e.s.pace)
			}
		})
	}
	defer func() { stopReaders(); readers.Wait() }()

	// 1-2: writes, a full backup while they go on, more writes.
	sleepCtx(ctx, e.s.warm)
	began := time.Now()
	repo := e.c.database().Archive()
	waited, err := repo.WhenFree(ctx, 10*time.Minute, nil, func(ctx context.Context) error { return repo.Backup(ctx, "full") })
	if err != nil {
		r.fail("backup: %v", err)
		return r
	}
	r.backupTook = time.Since(began) - waited // not the scheduler's backup it waited for
	sleepCtx(ctx, e.s.warm)

	// 3: T, bracketed by two reads of every key: the state at T lies
	// between them (a key changing in those few milliseconds may hold
	// either), the second once every commit stamped by T is visible
	// (settledAt); then the WAL segment that holds T.
	before, err := e.storedRows(ctx, prefix)
	if err != nil {
		r.fail("read kv_store: %v", err)
		return r
	}
	r.target = time.Now()
	if err := settledAt(ctx, e.pg, 30*time.Second); err != nil {
		r.fail("%v", err)
		return r
	}
	var walT string
	if err := e.pg.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())").Scan(&walT); err != nil {
		r.fail("wal position: %v", err)
		return r
	}
	after, err := e.storedRows(ctx, prefix)
	if err != nil {
		r.fail("read kv_store: %v", err)
		return r
	}

	// 4: more writes; once the segment holding T is archived (at most
	// archive_timeout), the accident.
	sleepCtx(ctx, e.s.post)
	if a.name == "rmdata" {
		if err := e.waitArchived(ctx, walT); err != nil {
			r.fail("%v", err)
			return r
		}
	}
	stopWriters()
	writers.Wait()

	// 5: the accident.
	switch a.name {
	case "rmdata":
		if r.failover, err = e.c.loseData(ctx); err != nil {
			r.fail("%v", err)
			return r
		}
	case "truncate":
		if _, err := e.pg.Exec(ctx, "TRUNCATE kv_store"); err != nil {
			r.fail("truncate: %v", err)
			return r
		}
	}
	fmt.Fprintf(os.Stderr, "==> %s: accident done (%s); restoring to T = %s\n", drillTarget(e.c), a.name, r.target.UTC().Format(time.RFC3339Nano))

	// 6: the restore, as make restore runs it on this topology.
	st := e.c.p.Stack()
	apps := engines.RestoreApps(st.Programs)
	rs := engines.Restore{Settings: e.c.s, Database: e.c.database(), Stack: st, Apps: apps, Log: os.Stderr}
	r.res, err = rs.Run(ctx, r.target)
	if e.c.ha != nil {
		e.c.ha.lost = "" // the restore started every node again
	}
	if err != nil {
		r.fail("restore: %v", err)
		return r
	}
	pidsRestored, err := e.c.pids(ctx)
	if err != nil {
		r.fail("pids: %v", err)
	}
	sleepCtx(ctx, 2*time.Second) // reads go on against the restored stack
	stopReaders()
	readers.Wait()
	e.waitWholeAfterRestore(ctx, &r)

	restored, err := e.storedRows(ctx, prefix)
	if err != nil {
		r.fail("read kv_store after the restore: %v", err)
		return r
	}
	r.checkRows(keys, before, after, restored, led.snapshot())
	r.checkReads(reads.ops, restored)
	e.sweep(ctx, &r, keys, restored)
	if n, err := e.staleEntries(ctx, keys, restored, func(s string) { r.fail("%s", s) }); err != nil {
		r.fail("cache: %v", err)
	} else {
		r.staleCache = n
	}
	e.writeAfterRestore(ctx, &r, prefix)
	e.checkApps(ctx, &r, apps, pidsRestored)
	if q, err := e.c.queues(ctx); err == nil {
		r.dlq = q["add_key.dlq"].Messages + q["del_key.dlq"].Messages - qBefore["add_key.dlq"].Messages - qBefore["del_key.dlq"].Messages
		if r.dlq != 0 {
			r.fail("%d messages dead-lettered", r.dlq)
		}
	}
	_ = led.save(filepath.Join(e.s.dir, "ledger-dr-"+a.name+".jsonl"))
	return r
}

// settledAt returns once every transaction that could have committed by
// now, as a restore to now counts commits, is visible: a read afterwards
// holds all of them. A restore to T keeps each transaction whose commit
// record's timestamp is at or before T, but PostgreSQL stamps that record
// before it waits for the synchronous standby, and the transaction becomes
// visible only after that wait: on the HA topology under load, hundreds of
// milliseconds later. So a read just after T misses commits stamped before
// T that the restore brings back (make dr-drill-ha counted them as lost).
// Such a transaction took its xid before its stamp: settledAt takes an
// xid of its own now (rolled back: an abort waits for no standby) and
// waits until no older one is in progress (the oldest xid running, a
// snapshot's xmin, is past its own).
func settledAt(ctx context.Context, db querier, timeout time.Duration) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	var now uint64
	err = tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&now)
	if rbErr := tx.Rollback(ctx); err == nil {
		err = rbErr
	}
	if err != nil {
		return fmt.Errorf("an xid: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		var oldest uint64
		err := db.QueryRow(ctx, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").Scan(&oldest)
		switch {
		case err != nil:
			return fmt.Errorf("the oldest transaction in progress: %w", err)
		case oldest > now:
			return nil
		case time.Now().After(deadline) || ctx.Err() != nil:
			return fmt.Errorf("transaction %d, begun before T, still in progress %s after T", oldest, timeout)
		}
		sleepCtx(ctx, 10*time.Millisecond)
	}
}

// querier is a pool's Begin and QueryRow.
type querier interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// waitArchived waits until the WAL segment walT has reached the repository.
func (e *env) waitArchived(ctx context.Context, walT string) error {
	deadline := time.Now().Add(3*drArchiveTimeout + 30*time.Second)
	for {
		var last *string
		if err := e.pg.QueryRow(ctx, "SELECT last_archived_wal FROM pg_stat_archiver").Scan(&last); err != nil {
			return fmt.Errorf("pg_stat_archiver: %w", err)
		}
		// Same timeline: segment names order as their positions.
		if last != nil && len(*last) == len(walT) && *last >= walT {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("WAL segment %s (holding T) not archived in time (last archived %v)", walT, last)
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// checkRows compares every key after the restore with its state at T,
// which lies between before and after (read just before and just after T).
func (r *drillRound) checkRows(keys []string, before, after, restored map[string]row, attempts []attempt) {
	byOp := map[string]attempt{}
	unacked := map[string]bool{} // key + value of a write without a 202
	for _, a := range attempts {
		if !a.acked() {
			unacked[a.Key+"\x00"+a.Op+"\x00"+a.Value] = true
		}
		switch {
		case !a.acked():
			r.notAcked++
		case a.TS.After(r.target):
			r.ackedAfter++
		default:
			r.ackedBefore++
		}
		if a.acked() {
			r.acked++
			byOp[a.OpID] = a
		}
	}
	var newest time.Time
	for _, k := range keys {
		b, inB := before[k]
		a, inA := after[k]
		got, in := restored[k]
		if in {
			if got.Ver.TS.After(r.target) {
				r.after++
				r.fail("%s holds %s, written after T", k, got.Ver)
			}
			if got.Ver.TS.After(newest) && !got.Ver.TS.After(r.target) {
				newest = got.Ver.TS
			}
			op := "put"
			if got.Deleted {
				op = "delete"
			}
			if w, ok := byOp[got.Ver.OpID]; ok && (got.Deleted || w.Value == got.Value) {
				// acknowledged
			} else if unacked[k+"\x00"+op+"\x00"+got.Value] {
				r.appliedNoAck++
			} else {
				r.unexplained++
				r.fail("%s holds %q (%s), which no acknowledged write sent", k, got.Value, got.Ver)
			}
		}
		switch {
		case inB == inA && (!inB || sameRow(b, a)):
			if in != inB || (in && !sameRow(got, b)) {
				r.lost++
				r.fail("%s: restored %v (present %v), at T %v (present %v)", k, got, in, b, inB)
			} else {
				r.same++
			}
		default:
			// Changed around T: anything from before to after is right.
			r.ambiguous++
			ok := in && (!inB || !got.Ver.less(b.Ver)) && inA && !a.Ver.less(got.Ver)
			if !ok && !(!in && !inB) {
				r.lost++
				r.fail("%s changed around T: restored %v, between %v and %v wanted", k, got, b, a)
			}
		}
	}
	if !newest.IsZero() {
		r.rpo = r.target.Sub(newest)
	}
}

// checkReads: every read answered after the processes stopped for the
// restore returns the restored state (nothing is written meanwhile);
// the first such answer ends the RTO.
func (r *drillRound) checkReads(ops []history.Op, restored map[string]row) {
	sort.Slice(ops, func(i, j int) bool { return ops[i].Return.Before(ops[j].Return) })
	for _, o := range ops {
		if o.Outcome != history.Done || o.Call.Before(r.res.AppsStopped) {
			continue
		}
		if r.rto == 0 {
			r.rto = o.Return.Sub(r.res.Began)
		}
		r.readsAfter++
		if stale, why := readDiffers(o, restored); stale {
			r.staleReads++
			r.fail("read of %s after the restore: %s", o.Key, why)
		}
	}
	if r.readsAfter == 0 {
		r.fail("no read was answered after the restore")
	}
}

func sameRow(a, b row) bool {
	return a.Value == b.Value && a.Deleted == b.Deleted && a.Ver.TS.Equal(b.Ver.TS) && a.Ver.OpID == b.Ver.OpID
}

func readDiffers(o history.Op, restored map[string]row) (bool, string) {
	want, in := restored[o.Key]
	live := in && !want.Deleted
	switch {
	case o.Found != live:
		return true, fmt.Sprintf("found %v (%q), restored live %v", o.Found, o.Value, live)
	case o.Found && o.Value != want.Value:
		return true, fmt.Sprintf("%q, restored %q", o.Value, want.Value)
	}
	return false, ""
}

// sweep reads every key twice through nginx: a fill from PostgreSQL, then
// (mostly) the cache.
func (e *env) sweep(ctx context.Context, r *drillRound, keys []string, restored map[string]row) {
	c := &history.Client{ID: 2000, Base: e.s.nginx, HTTP: e.http, Rec: &history.Recorder{}}
	for range 2 {
		for _, k := range keys {
			o := c.Get(ctx, k, "")
			r.sweepReads++
			if o.Outcome != history.Done {
				r.sweepStale++
				r.fail("sweep read of %s: %s %s", k, o.Outcome, o.Err)
				continue
			}
			if stale, why := readDiffers(o, restored); stale {
				r.sweepStale++
				r.fail("sweep read of %s: %s", k, why)
			}
		}
	}
}

// writeAfterRestore: the restored stack takes a write and applies it.
func (e *env) writeAfterRestore(ctx context.Context, r *drillRound, prefix string) {
	c := &history.Client{ID: 3000, Base: e.s.nginx, HTTP: e.http, Rec: &history.Recorder{}}
	key := prefix + "-after"
	w := c.Write(ctx, history.Put, key, "after the restore", true)
	g := c.Get(ctx, key, "")
	r.writeAfter = w.Status == 200 && g.Found && g.Value == "after the restore"
	if !r.writeAfter {
		r.fail("a write with ?wait=applied after the restore: %d %s; its read: found %v %q", w.Status, w.Err, g.Found, g.Value)
	}
}

// loseData is the rmdata accident. The single node: PostgreSQL stopped at
// once (an immediate shutdown, as a crash) and its data directory removed.
// The HA topology: the primary's machine lost (losePrimary: its Patroni and
// postgres killed -9, kept down) and its data directory removed; then
// Patroni's failover, awaited: the standby promoted once the leader key
// expires. It returns how long the failover took.
func (c *private) loseData(ctx context.Context) (time.Duration, error) {
	if c.ha == nil {
		if err := c.p.Stop(ctx, c.pg.Program().Name); err != nil {
			return 0, fmt.Errorf("stop postgres: %w", err)
		}
		return 0, os.RemoveAll(dataDir(c.pg.Dir))
	}
	lost := time.Now()
	if err := losePrimary.run(ctx, c); err != nil {
		return 0, fmt.Errorf("lose the primary: %w", err)
	}
	for _, n := range c.ha.Postgres.Nodes {
		if n.Name == c.ha.lost {
			if err := os.RemoveAll(dataDir(n.Dir)); err != nil {
				return 0, fmt.Errorf("remove %s's data directory: %w", n.Name, err)
			}
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if p, err := c.ha.Postgres.Primary(ctx); err == nil && p.Name != c.ha.lost {
			return time.Since(lost), nil
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("no failover within 2 min of losing %s: %v", c.ha.lost, err)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// dataDir is an engine node's PostgreSQL data directory (internal/engine
// keeps it in the node's Dir).
func dataDir(dir string) string { return filepath.Join(dir, "data") }

// waitWholeAfterRestore waits until the engines are whole again after the
// restore (c.whole: on the HA topology every cluster, PostgreSQL's with a
// leader and a synchronous standby that has replayed everything, Patroni's
// /cluster), at most 5 min.
func (e *env) waitWholeAfterRestore(ctx context.Context, r *drillRound) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		err := e.c.whole(ctx)
		if err == nil {
			r.whole = time.Since(r.res.Began)
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.fail("not whole again within 5 min of the restore: %v", err)
			return
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// checkApps: every process the restore started again (the API replicas
// and the consumers) is, after the checks, the same process it started
// (none crashed or was restarted since) and ready.
func (e *env) checkApps(ctx context.Context, r *drillRound, apps []string, restored map[string]int) {
	now, err := e.c.pids(ctx)
	if err != nil {
		r.fail("pids: %v", err)
		return
	}
	r.appsClean = true
	for _, name := range apps {
		if restored[name] == 0 || now[name] != restored[name] {
			r.appsClean = false
			r.fail("%s: pid %d after the restore, %d at the end", name, restored[name], now[name])
		}
	}
	if !e.ready(ctx, e.c.readyAddrs()) {
		r.appsClean = false
		r.fail("a replica or consumer does not answer /readyz after the restore")
	}
}
