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

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kvstack/kvstack/lab/history"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// The disaster-recovery drill (make dr-drill, -mode dr): on a private
// single-node stack whose PostgreSQL archives with pgBackRest, on ports of
// its own, for each accident: write under load; take a full backup and go
// on writing; note a point T; go on writing; commit the accident; restore
// to T (lab/native/engines.Restore, what make restore runs); then check
// every key, every read answered after the restore, and the cache.

// drPorts are the drill's: the chaos ports plus 1000 (31xxx), below the
// ephemeral range too, so that the drill and a campaign never share one.
var drPorts = func() map[string]string {
	out := map[string]string{}
	for k, v := range chaosPorts {
		n, _ := strconv.Atoi(v)
		out[k] = strconv.Itoa(n + 1000)
	}
	return out
}()

// drArchiveTimeout is the drill's archive_timeout (KV_ARCHIVE_TIMEOUT; the
// stack's default is 60s): after the data directory is lost, the restore
// needs the WAL past T archived, which the drill waits for.
const drArchiveTimeout = 10 * time.Second

// accidents the drill commits, one round each.
var accidents = []struct{ name, what string }{
	{"rmdata", "PostgreSQL stopped at once (immediate shutdown, as a crash) and its data directory removed"},
	{"truncate", "TRUNCATE kv_store by the application's role, the server left running"},
}

func startDR(ctx context.Context, root, dir, engineDir string, log io.Writer) (*private, error) {
	return startPrivateOn(ctx, root, dir, engineDir, log, drPorts, true)
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
	failures                           []string
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

func drill(ctx context.Context, s settings, c *private) error {
	pool, err := pgxpool.New(ctx, c.s.Get("DATABASE_URL"))
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer pool.Close()
	rdb, err := engines.RedisClient(c.s)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer rdb.Close()
	client, err := newClient(c.s)
	if err != nil {
		return err
	}
	e := &env{s: s, c: c, pg: pool, rdb: rdb, http: client}
	repo := c.pg.Archive
	if err := repo.CreateStanza(ctx); err != nil {
		return err
	}
	started := time.Now()
	runID := time.Now().UTC().Format("150405")
	var rounds []drillRound
	for i, a := range accidents {
		if s.only != "" && !strings.Contains(","+s.only+",", ","+a.name+",") {
			continue
		}
		fmt.Fprintf(os.Stderr, "==> dr-drill: [%d/%d] %s: %s\n", i+1, len(accidents), a.name, a.what)
		r := e.drillRound(ctx, a.name, a.what, fmt.Sprintf("dr-%s-%d-%s", runID, i, a.name))
		fmt.Fprintf(os.Stderr, "==> dr-drill: %s\n", r.summary())
		rounds = append(rounds, r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	rep := drillReport{s: s, rounds: rounds, started: started, took: time.Since(started)}
	_ = os.WriteFile(filepath.Join(s.dir, "RELIABILITY-dr.md"), []byte(rep.markdown()), 0o644)
	if s.out != "" {
		if err := rep.write(s.out); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "==> dr-drill: wrote %s\n", s.out)
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
	fmt.Fprintf(os.Stderr, "==> dr-drill: %d accidents, every check passed (%s)\n", len(rounds), time.Since(started).Round(time.Second))
	return nil
}

func (r drillRound) summary() string {
	status := "PASS"
	if len(r.failures) > 0 {
		status = "FAIL: " + strings.Join(r.failures, "; ")
	}
	return fmt.Sprintf("%s: %d keys, %d writes acked before T and %d after; lost %d, after-T %d, unexplained %d; reads after the restore %d (stale %d), sweep stale %d, cache stale %d; RPO %s, RTO %s — %s",
		r.accident, r.keys, r.ackedBefore, r.ackedAfter, r.lost, r.after, r.unexplained, r.readsAfter, r.staleReads, r.sweepStale, r.staleCache,
		r.rpo.Round(time.Millisecond), r.rto.Round(time.Millisecond), status)
}

func (e *env) drillRound(ctx context.Context, accident, what, prefix string) (r drillRound) {
	r = drillRound{accident: accident, what: what, keys: e.s.keys}
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
	if err := e.c.pg.Archive.Backup(ctx, "full"); err != nil {
		r.fail("backup: %v", err)
		return r
	}
	r.backupTook = time.Since(began)
	sleepCtx(ctx, e.s.warm)

	// 3: T, bracketed by two reads of every key: the state at T lies
	// between them (a key changing in those few milliseconds may hold
	// either); then the WAL segment that holds T.
	before, err := e.storedRows(ctx, prefix)
	if err != nil {
		r.fail("read kv_store: %v", err)
		return r
	}
	r.target = time.Now()
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
	if accident == "rmdata" {
		if err := e.waitArchived(ctx, walT); err != nil {
			r.fail("%v", err)
			return r
		}
	}
	stopWriters()
	writers.Wait()

	// 5: the accident.
	switch accident {
	case "rmdata":
		if err := e.c.p.Stop(ctx, e.c.pg.Program().Name); err != nil {
			r.fail("stop postgres: %v", err)
			return r
		}
		if err := os.RemoveAll(filepath.Join(e.c.pg.Dir, "data")); err != nil {
			r.fail("remove the data directory: %v", err)
			return r
		}
	case "truncate":
		if _, err := e.pg.Exec(ctx, "TRUNCATE kv_store"); err != nil {
			r.fail("truncate: %v", err)
			return r
		}
	}
	fmt.Fprintf(os.Stderr, "==> dr-drill: accident done (%s); restoring to T = %s\n", accident, r.target.UTC().Format(time.RFC3339Nano))

	// 6: the restore, as make restore runs it.
	rs := engines.Restore{Settings: e.c.s, Database: engines.SingleDatabase{Postgres: e.c.pg},
		Stack: e.c.p.Stack(), Apps: []string{"api1", "api2", "consumer"}, Log: os.Stderr}
	if r.res, err = rs.Run(ctx, r.target); err != nil {
		r.fail("restore: %v", err)
		return r
	}
	sleepCtx(ctx, 2*time.Second) // reads go on against the restored stack
	stopReaders()
	readers.Wait()

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
	if q, err := e.c.queues(ctx); err == nil {
		r.dlq = q["add_key.dlq"].Messages + q["del_key.dlq"].Messages - qBefore["add_key.dlq"].Messages - qBefore["del_key.dlq"].Messages
		if r.dlq != 0 {
			r.fail("%d messages dead-lettered", r.dlq)
		}
	}
	_ = led.save(filepath.Join(e.s.dir, "ledger-dr-"+accident+".jsonl"))
	return r
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
