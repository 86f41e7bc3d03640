package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/lab/history"
)

// result holds one fault's figures and the checks that failed.
type result struct {
	name, what string
	killed     []string

	attempts, acked, status503, otherFail, hung int
	failByStatus                                map[string]int
	unackedApplied                              int
	writeMax, readMax                           time.Duration
	reads, readErrs                             int
	keys, lost, unexplained                     int
	staleAtDrain, staleFinal                    int
	staleAtHeal                                 int // right after the heal, load still running
	dlqDelta                                    int
	heal, recovery, drain, longestGap           time.Duration
	unackedAtKill                               int              // messages in flight (unacked) just before the fault
	restarted                                   []string         // processes whose pid changed (the killed ones)
	histories                                   []history.Result // linearizable, sessions, convergence
	examples                                    []string
	failures                                    []string

	outageFigures // readiness and reads over the fault (outage.go)
}

func (r result) summary() string {
	s := fmt.Sprintf("%s: acked %d/%d, 503 %d, other failures %d, lost %d, unexplained %d, stale cache %d (at drain %d), DLQ +%d, max write %s, heal %s, recovery %s",
		r.name, r.acked, r.attempts, r.status503, r.otherFail, r.lost, r.unexplained, r.staleFinal, r.staleAtDrain, r.dlqDelta,
		r.writeMax.Round(time.Millisecond), r.heal.Round(time.Millisecond), r.recovery.Round(time.Millisecond))
	s += ", histories " + r.historyOps()
	if len(r.failures) > 0 {
		s += " — FAILED: " + strings.Join(r.failures, "; ")
	}
	return s
}

// hangAfter: a write unanswered this long is a hang (the API's publish
// timeout is 2 s and nginx's read timeout 5 s).
const hangAfter = 6 * time.Second

// runFault runs one fault under load, then checks what it left behind:
// every acknowledged write applied last-writer-wins, the cache equal to
// PostgreSQL, nothing dead-lettered, only the killed processes restarted.
func (e *env) runFault(ctx context.Context, f fault, prefix string) (r result) {
	r = result{name: f.name, what: f.what, killed: f.killed, failByStatus: map[string]int{}}
	for _, name := range f.extra {
		if err := start(name).do(ctx, e.c); err != nil {
			r.fail("%v", err)
			return r
		}
	}
	// start returns once a process answers; supervisord counts it RUNNING
	// (and pids lists it) only after its startsecs.
	if err := e.c.waitRunning(ctx, f.extra); err != nil {
		r.fail("%v", err)
		return r
	}
	defer func() {
		for _, name := range f.extra {
			if err := stop(name).do(context.Background(), e.c); err != nil {
				r.fail("%v", err)
			}
		}
	}()
	keys := make([]string, e.s.keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-k%03d", prefix, i)
	}
	r.keys = len(keys)
	pidsBefore, err := e.c.pids(ctx)
	if err != nil {
		r.fail("pids: %v", err)
		return r
	}
	qBefore, err := e.c.queues(ctx)
	if err != nil {
		r.fail("queues: %v", err)
		return r
	}

	led := &ledger{}
	client, err := newClient(e.c.s)
	if err != nil {
		r.fail("client: %v", err)
		return r
	}
	l := &load{nginx: e.s.nginx, client: client, keys: keys, writers: e.s.writers, readers: e.s.readers, pace: e.s.pace, led: led, h: newHistories(prefix)}
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { l.run(lctx) })
	defer func() { stopLoad(); wg.Wait() }()

	sleepCtx(ctx, e.s.warm)
	var injectAt time.Time
	var rec *readinessLog
	rctx, stopRecording := context.WithCancel(ctx)
	if f.inject != nil {
		rec = recordReadiness(rctx, e.c.readyProcs())
		injectAt = e.injectAndRecover(ctx, f, &r, l, pidsBefore, prefix)
	}
	sleepCtx(ctx, e.s.post)
	stopRecording() // the states after the recovery too, through the load's end
	if rec != nil {
		rec.stop()
	}
	stopLoad()
	wg.Wait()
	e.drain(ctx, &r)
	e.checkHistories(ctx, &r, l, f)

	_ = led.save(filepath.Join(e.s.dir, "ledger-"+f.name+".jsonl"))
	r.reads, r.readErrs, r.readMax = led.reads, led.readErrs, time.Duration(led.readMax*float64(time.Second))
	if len(led.readFails) > 0 {
		r.example(fmt.Sprintf("failed reads by status: %v", led.readFails))
	}
	byKey := r.tallyWrites(led.snapshot(), injectAt)
	r.noteOutage(rec, led, injectAt)
	rows, err := e.storedRows(ctx, prefix)
	if err != nil {
		r.fail("read kv_store: %v", err)
		return r
	}
	r.verifyKeys(byKey, rows)
	e.checkCache(ctx, &r, keys, rows, prefix)
	e.checkDLQ(ctx, &r, qBefore)
	e.checkProcesses(ctx, &r, f.killed, pidsBefore)
	r.judge(f)
	return r
}

// historyOps: the operations each history check read, linearizable /
// sessions / convergence, marked when illegal or undecided.
func (r result) historyOps() string {
	if len(r.histories) == 0 {
		return "–"
	}
	parts := make([]string, len(r.histories))
	for i, h := range r.histories {
		parts[i] = fmt.Sprint(h.Ops)
		switch {
		case h.Visualization != "":
			parts[i] += " ILLEGAL"
		case h.Undecided():
			parts[i] += " undecided"
		}
	}
	return strings.Join(parts, " / ")
}

// historiesDecided counts the history checks of results that porcupine
// decided (legal or illegal), and all of them.
func historiesDecided(results []result) (decided, checks int) {
	for _, r := range results {
		for _, h := range r.histories {
			checks++
			if !h.Undecided() {
				decided++
			}
		}
	}
	return decided, checks
}

func (r *result) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// injectAndRecover injects the fault, waits for a killed process to be
// back or heals the fault after its hold, and waits until the stack has
// recovered: a write through nginx acknowledged and every process ready.
// It returns when the fault was injected.
func (e *env) injectAndRecover(ctx context.Context, f fault, r *result, l *load, pidsBefore map[string]int, prefix string) time.Time {
	if q, err := e.c.queues(ctx); err == nil {
		r.unackedAtKill = q["add_key"].Unacked + q["del_key"].Unacked
	}
	injectAt := time.Now()
	if err := f.inject.do(ctx, e.c); err != nil {
		r.fail("inject: %v", err)
	}
	if f.firstCommit {
		committed := e.firstCommit(ctx, injectAt)
		defer func() { r.example(<-committed) }()
	}
	if len(f.killed) > 0 {
		// Nobody heals a kill: the supervisor restarts the process.
		r.heal = e.waitBack(ctx, f.killed, pidsBefore, r.fail)
	}
	sleepCtx(ctx, f.hold-time.Since(injectAt))
	if f.heal != nil {
		healAt := time.Now()
		if err := f.heal.do(ctx, e.c); err != nil {
			r.fail("heal: %v", err)
		}
		r.heal = time.Since(healAt)
	}
	healed := time.Now()
	r.healedAt = healed
	// What the cache holds the moment the service is back: after a Redis
	// restart from its dump, entries older than PostgreSQL (the repair
	// loop must fix them); otherwise only writes in flight.
	if rows, err := e.storedRows(ctx, prefix); err == nil {
		r.staleAtHeal, _ = e.staleEntries(ctx, l.keys, rows, nil)
	}
	e.waitRecovered(ctx, r, l)
	r.recovery = time.Since(healed)
	e.waitWhole(ctx, r, injectAt)
	return injectAt
}

// waitWhole waits until the engines are whole again (the HA clusters,
// whatever the fault). For a fault that killed an engine's node, heal is
// how long after the kill that was, and the node is named with its pids.
func (e *env) waitWhole(ctx context.Context, r *result, injectAt time.Time) {
	deadline := time.Now().Add(recoverWithin)
	for {
		err := e.c.whole(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.fail("engines not whole within %s: %v", recoverWithin, err)
			break
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	if e.c.killedNode != "" {
		r.heal = time.Since(injectAt)
		pid, _ := e.c.p.Pid(ctx, e.c.killedNode)
		what, by := e.c.killedNode, "supervisor"
		if i := slices.IndexFunc(e.c.ha.Postgres.Nodes, func(n *engine.PatroniNode) bool { return n.Name == e.c.killedNode }); i >= 0 {
			what, by = e.c.killedNode+"'s Patroni", "started again, rewound by Patroni into the new primary's standby"
			if e.c.killedPostgres {
				what, by = e.c.killedNode+"'s postgres", "restarted by Patroni"
				pid = e.c.ha.Postgres.Nodes[i].PostmasterPid()
			}
		}
		r.restarted = append(r.restarted, fmt.Sprintf("%s %d→%d (%s)", what, e.c.killedPid, pid, by))
		e.c.killedNode, e.c.killedPostgres = "", false
	}
}

// firstCommit measures, in the background, how long after the fault a
// commit through DATABASE_URL (the multi-host URL the consumers use,
// target_session_attrs=read-write) first succeeds: a new session every
// 50 ms, each running SELECT txid_current(), which a standby refuses.
func (e *env) firstCommit(ctx context.Context, since time.Time) <-chan string {
	out := make(chan string, 1)
	dsn := e.c.s.Get("DATABASE_URL")
	go func() {
		deadline := since.Add(recoverWithin)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			conn, err := pgx.Connect(cctx, dsn)
			if err == nil {
				_, err = conn.Exec(cctx, "SELECT txid_current()")
				conn.Close(context.Background())
			}
			cancel()
			if err == nil {
				out <- fmt.Sprintf("first commit through DATABASE_URL %s after the kill", ms(time.Since(since)))
				return
			}
			sleepCtx(ctx, 50*time.Millisecond)
		}
		out <- fmt.Sprintf("no commit through DATABASE_URL within %s of the kill", recoverWithin)
	}()
	return out
}

// recoverWithin bounds waitRecovered: a RabbitMQ node takes tens of
// seconds to boot and rejoin on a loaded machine, a PostgreSQL node to be
// rejoined from a base backup.
const recoverWithin = 3 * time.Minute

// waitRecovered waits until a write through nginx is acknowledged and
// every process answers /readyz.
func (e *env) waitRecovered(ctx context.Context, r *result, l *load) {
	addrs := e.c.readyAddrs()
	deadline := time.Now().Add(recoverWithin)
	for {
		probe := l.keys[0]
		a := l.write(l.historyClient(l.writers, &l.h.lww), probe, history.Put, fmt.Sprintf("%s/probe/%d", probe, time.Now().UnixNano()))
		if a.acked() && e.ready(ctx, addrs) {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.fail("not recovered within %s of the heal", recoverWithin)
			return
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// drain waits until nothing is ready or unacked in the work queues.
func (e *env) drain(ctx context.Context, r *result) {
	began := time.Now()
	for {
		q, err := e.c.queues(ctx)
		if err == nil && q["add_key"].Messages == 0 && q["del_key"].Messages == 0 {
			break
		}
		if time.Since(began) > e.s.drainTimeout || ctx.Err() != nil {
			r.fail("queues not drained within %s: %v", e.s.drainTimeout, q)
			break
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	r.drain = time.Since(began)
}

// tallyWrites counts the ledger's writes by outcome, the slowest, the
// hung ones and the longest gap between two 202s after the injection; it
// returns the writes by key.
func (r *result) tallyWrites(attempts []attempt, injectAt time.Time) map[string][]attempt {
	byKey := map[string][]attempt{}
	var last202 time.Time
	for _, a := range attempts {
		byKey[a.Key] = append(byKey[a.Key], a)
		r.attempts++
		lat := a.End.Sub(a.Start)
		r.writeMax = max(r.writeMax, lat)
		if lat > hangAfter || (a.Status == 0 && strings.Contains(a.Err, "Timeout")) {
			r.hung++
		}
		switch {
		case a.acked():
			r.acked++
			if !injectAt.IsZero() && a.End.After(injectAt) && !last202.IsZero() {
				r.longestGap = max(r.longestGap, a.End.Sub(last202))
			}
			last202 = a.End
		case a.Status == 503:
			r.status503++
		default:
			r.otherFail++
			k := fmt.Sprint(a.Status)
			if a.Status == 0 {
				k = "no answer"
			}
			r.failByStatus[k]++
		}
	}
	return byKey
}

// verifyKeys checks each key's stored row against the last writer among
// what was acknowledged; a row nobody wrote is checked too.
func (r *result) verifyKeys(byKey map[string][]attempt, rows map[string]row) {
	for k := range rows {
		if _, ok := byKey[k]; !ok {
			byKey[k] = nil
		}
	}
	for k, ops := range byKey {
		var stored *row
		if rw, ok := rows[k]; ok {
			stored = &rw
		}
		v, why := verifyKey(ops, stored)
		switch v {
		case verdictUnacked:
			r.unackedApplied++
		case verdictLost:
			r.lost++
			r.example(k + ": " + why)
		case verdictUnexplained:
			r.unexplained++
			r.example(k + ": " + why)
		}
	}
}

// checkCache counts cache entries that differ from PostgreSQL right after
// the drain, then again once the repair loop had time.
func (e *env) checkCache(ctx context.Context, r *result, keys []string, rows map[string]row, prefix string) {
	var err error
	r.staleAtDrain, err = e.staleEntries(ctx, keys, rows, nil)
	if err != nil {
		r.fail("read cache: %v", err)
	}
	r.staleFinal = r.staleAtDrain
	for deadline := time.Now().Add(10 * time.Second); r.staleFinal > 0 && time.Now().Before(deadline); {
		sleepCtx(ctx, 500*time.Millisecond)
		rows, _ = e.storedRows(ctx, prefix)
		r.staleFinal, _ = e.staleEntries(ctx, keys, rows, nil)
	}
	if r.staleFinal > 0 {
		_, _ = e.staleEntries(ctx, keys, rows, r.example)
	}
}

// checkDLQ counts what the fault dead-lettered.
func (e *env) checkDLQ(ctx context.Context, r *result, before map[string]engine.QueueDepth) {
	after, err := e.c.queues(ctx)
	if err != nil {
		r.fail("queues: %v", err)
	}
	for _, q := range []string{"add_key.dlq", "del_key.dlq"} {
		r.dlqDelta += after[q].Messages - before[q].Messages
	}
}

// checkProcesses checks that the killed processes came back (new pid) and
// that no other one died or was restarted.
func (e *env) checkProcesses(ctx context.Context, r *result, killedNames []string, pidsBefore map[string]int) {
	pidsAfter, err := e.c.pids(ctx)
	if err != nil {
		r.fail("pids: %v", err)
	}
	r.compareProcesses(killedNames, pidsBefore, pidsAfter)
}

// compareProcesses is checkProcesses on the pids before and after: a
// killed process must have had a pid before (else its restart could not be
// told from its first start, and went unreported: consumer3, started for
// its fault, was still STARTING when the pids were read) and another after,
// RUNNING (pids lists no other state: a restart that dies before
// supervisord's startsecs is no restart);
// every other process keeps its pid.
func (r *result) compareProcesses(killedNames []string, pidsBefore, pidsAfter map[string]int) {
	names := make([]string, 0, len(pidsBefore))
	for n := range pidsBefore {
		names = append(names, n)
	}
	for _, n := range killedNames {
		if pidsBefore[n] == 0 {
			r.fail("%s was to be killed but had no pid before the fault", n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		before, after := pidsBefore[n], pidsAfter[n]
		killed := slices.Contains(killedNames, n)
		switch {
		case after == 0:
			r.fail("%s is down after the fault", n)
		case killed && after == before:
			r.fail("%s was to be killed but kept pid %d", n, before)
		case killed:
			r.restarted = append(r.restarted, fmt.Sprintf("%s %d→%d", n, before, after))
		case after != before:
			r.fail("%s changed pid %d→%d: it died and was restarted", n, before, after)
		}
	}
}

// judge turns the figures into failures: what no fault may cause, and
// what this fault was not allowed to cause.
func (r *result) judge(f fault) {
	if r.lost > 0 {
		r.fail("%d keys lost an acknowledged operation", r.lost)
	}
	if r.unexplained > 0 {
		r.fail("%d keys hold a state no operation wrote", r.unexplained)
	}
	if r.staleFinal > 0 {
		r.fail("%d cache entries differ from PostgreSQL", r.staleFinal)
	}
	if r.dlqDelta != 0 {
		r.fail("%d messages dead-lettered", r.dlqDelta)
	}
	if r.hung > 0 {
		r.fail("%d writes hung (> %s or client timeout)", r.hung, hangAfter)
	}
	if !f.writesMayFail && r.status503+r.otherFail > 0 {
		r.fail("%d writes refused (503 %d, other %v) by a fault that should not touch writes", r.status503+r.otherFail, r.status503, r.failByStatus)
	}
	if !f.readsMayFail && r.readErrs > 0 {
		r.fail("%d reads failed", r.readErrs)
	}
	if f.maxGap > 0 && r.longestGap >= f.maxGap {
		r.fail("longest gap without a 202 %s, not under %s", ms(r.longestGap), f.maxGap)
	}
	if r.acked == 0 {
		r.fail("no write acknowledged at all")
	}
	r.judgeOutage(f)
}

func (r *result) example(s string) {
	if len(r.examples) < 5 {
		r.examples = append(r.examples, s)
	}
}

// waitBack waits until each killed process runs again with a new pid and
// answers its health check, restarted by its supervisor alone; it returns
// how long that took from the kill.
func (e *env) waitBack(ctx context.Context, killed []string, before map[string]int, fail func(string, ...any)) time.Duration {
	began := time.Now()
	st := e.c.p.Stack()
	for _, name := range killed {
		deadline := time.Now().Add(90 * time.Second)
		for {
			pid, _ := st.Supervisor().Pid(ctx, name)
			if pid != 0 && pid != before[name] && st.WaitHealthy(ctx, name) == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				fail("%s not back by itself within 90 s of its kill", name)
				break
			}
			sleepCtx(ctx, 50*time.Millisecond)
		}
	}
	return time.Since(began)
}

func (e *env) storedRows(ctx context.Context, prefix string) (map[string]row, error) {
	rows, err := e.pg.Query(ctx, `SELECT key, coalesce(value, ''), deleted, last_updated, op_id::text
		FROM kv_store WHERE key LIKE $1 || '%'`, prefix+"-")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]row{}
	for rows.Next() {
		var k string
		var rw row
		if err := rows.Scan(&k, &rw.Value, &rw.Deleted, &rw.Ver.TS, &rw.Ver.OpID); err != nil {
			return nil, err
		}
		out[k] = rw
	}
	return out, rows.Err()
}

// staleEntries counts cached entries that differ from their row.
func (e *env) staleEntries(ctx context.Context, keys []string, rows map[string]row, report func(string)) (int, error) {
	n := 0
	pipe := e.rdb.Pipeline()
	cmds := make([]interface {
		Result() (map[string]string, error)
	}, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HGetAll(ctx, envPort("REDIS_KEY_PREFIX", "kv:")+k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	for i, k := range keys {
		h, err := cmds[i].Result()
		if err != nil {
			return 0, err
		}
		var c *cacheEntry
		if len(h) > 0 {
			c = &cacheEntry{V: h["v"], D: h["d"], Val: h["val"]}
		}
		var stored *row
		if rw, ok := rows[k]; ok {
			stored = &rw
		}
		if stale, why := cacheStale(c, stored); stale {
			n++
			if report != nil {
				report(k + ": cache " + why)
			}
		}
	}
	return n, nil
}
