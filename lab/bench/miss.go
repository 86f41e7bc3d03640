package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// seed writes count live rows key = prefix + zero-padded number straight
// into PostgreSQL, as the consumer would have (never through the cache).
func (h *harness) seed(ctx context.Context, prefix string, from, count int) error {
	_, err := h.pool.Exec(ctx, `
		INSERT INTO kv_store (key, value, last_updated, op_id, deleted)
		SELECT $1 || lpad(g::text, 10, '0'), $2, now(), gen_random_uuid(), false
		  FROM generate_series($3::int, $4::int) g
		ON CONFLICT (key) DO NOTHING`, prefix, h.value, from, from+count-1)
	return err
}

func seedKey(prefix string, i int) string { return fmt.Sprintf("%s%010d", prefix, i) }

// get returns an Op that GETs url(i) with the worker's client, ok on want.
func (h *harness) get(url func(i int64) string, want int) Op {
	return func(ctx context.Context, w int, i int64) (int, bool) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url(i), nil)
		code, err := h.clients.Do(w, req)
		return code, err == nil && code == want
	}
}

// 2. GET miss: kvstack beside a raw primary-key SELECT.
func (h *harness) getMiss(ctx context.Context) (*Section, error) {
	o := h.o
	runs := missRanges(o)
	sec := &Section{ID: "miss", Title: titleMiss,
		Setup: fmt.Sprintf("%d connections through nginx, each request a key never read before (%d rows seeded straight into PostgreSQL, never cached; a run stops at %s or after %d keys). "+
			"Reference: the same nginx in front of two minimal Go handlers (kvbench stub -miss, one process per replica, the API's environment) that read the key with one pgx primary-key SELECT of the API's columns (PG_MAX_CONNS connections each) and fill the cache with it by the cache's compare-and-set script (one EVALSHA through go-redis), without tracing, logging or metrics; "+
			"the cache's entries of the keys read are removed after each kvstack and reference run, so that every read of either is a miss. "+
			"Baseline: raw pgx primary-key SELECT of the same columns from %d goroutines over a pool of %d connections (both API replicas' pools together), from the harness (PostgreSQL's CPU only), at the same offered rate as the others in the judged runs.",
			o.Conns, runs*o.MissPerRun, o.Dur, o.MissPerRun, o.Conns, 2*h.api.Postgres.MaxConns)}
	if err := h.seed(ctx, "bench:miss:", 0, runs*o.MissPerRun); err != nil {
		return sec, err
	}
	h.evictCache(ctx, "bench:miss:")
	// Autovacuum would work through the new rows during the runs, its CPU
	// counted as the reads'.
	if _, err := h.pool.Exec(ctx, `VACUUM (ANALYZE) kv_store`); err != nil {
		return sec, err
	}
	var notMiss atomic.Int64
	app, raw, ref, stop, err := h.missSystems(ctx, &notMiss)
	if err != nil {
		return sec, err
	}
	defer stop()
	table, closed := NewCPUTable("GET miss", "request", cpuRowsHTTP...), NewCPUTable("GET miss", "request", cpuRowsHTTP...)
	a, err := h.judgeAtRate(ctx, "get-miss", sec, table, closed, []system{app, ref, raw})
	if err != nil {
		return sec, err
	}
	a.tableTitles("GET miss", o, table, closed)
	if r := a.closed[colKVStack]; r.OK >= int64(o.MissPerRun) {
		sec.Notes = append(sec.Notes, fmt.Sprintf("the closed loop used up its %d keys before %s: its rate is bounded by the count", o.MissPerRun, o.Calib))
	}
	for i, r := range a.runs[colKVStack] {
		if r.OK >= int64(o.MissPerRun) {
			sec.Notes = append(sec.Notes, fmt.Sprintf("run %d used up its %d keys before %s: the figure is bounded by the count", i+1, o.MissPerRun, o.Dur))
		}
	}
	if n := notMiss.Load(); n > 0 {
		sec.Notes = append(sec.Notes, fmt.Sprintf("%d responses were not served from PostgreSQL", n))
	}
	sec.CPU = []*CPUTable{table, closed}
	// The baseline (raw SELECT) column's operations are rows: the figures
	// say requests a second of every column alike.
	sec.Figures = a.figures("req/s", colKVStack, colReference, colBaseline)
	sec.Targets = append(a.judged([]Target{
		AtMostRuns("GET miss: API replicas' CPU per request ÷ the reference handler's (one PK SELECT, one cache fill), as shipped",
			table.Runs(rowReplicas, colKVStack), table.Runs(rowReplicas, colReference), 2, fmtTimes),
		Reported("GET miss: PostgreSQL's CPU per request ÷ the reference handler's", Ratio(table.Median("postgres", colKVStack), table.Median("postgres", colReference)), fmtTimes),
	}, colKVStack, colReference),
		a.closedRatio("GET miss throughput ÷ raw PK SELECT", colKVStack, colBaseline))
	sec.Targets = append(sec.Targets, a.judged([]Target{
		AtMostRuns("GET miss: PostgreSQL's CPU per request ÷ the raw SELECT's (both at the offered rate)", table.Runs("postgres", colKVStack), table.Runs("postgres", colBaseline), 1.5, fmtTimes),
	}, colKVStack, colBaseline)...)
	return sec, nil
}

// missSystems are kvstack reading keys never read before (the warm-up
// takes the first range, each run the next), the reference reading the
// same keys after them, each run's cache fills removed after it, and the
// raw SELECT of the same keys; notMiss counts kvstack's answers not served
// by PostgreSQL. stop stops the reference.
func (h *harness) missSystems(ctx context.Context, notMiss *atomic.Int64) (app, raw, ref system, stop func(), err error) {
	o := h.o
	var appRun, rawRun, refRun int
	evict := func() { h.evictCache(context.Background(), "bench:miss:") }
	app = h.stackSystem(nil, "api-get-miss-cpu")
	app.after = evict
	app.load = func(ctx context.Context, dur time.Duration, rate float64) Result {
		off := appRun * o.MissPerRun
		appRun++
		return Paced(ctx, o.Conns, dur, int64(o.MissPerRun), rate, h.missOp(o.Nginx, off, notMiss))
	}
	size, err := h.missSize(ctx)
	if err != nil {
		return app, raw, ref, nil, err
	}
	stub, err := h.startStub(ctx, "miss-reference", o.port(6), [2]string{o.port(7), o.port(8)}, "", "/api?key="+missSizeKey(o), "-size", fmt.Sprint(size), "-miss")
	if err != nil {
		return app, raw, ref, nil, err
	}
	ref = h.edgeSystem(colReference, stub, nil, "redis", "postgres")
	ref.after = evict
	ref.load = func(ctx context.Context, dur time.Duration, rate float64) Result {
		off := refRun * o.MissPerRun
		refRun++
		return Paced(ctx, o.Conns, dur, int64(o.MissPerRun), rate, h.missOp(stub.url, off, nil))
	}
	raw = system{name: colBaseline,
		procs: func(ctx context.Context) ([]Proc, error) { return h.stackProcs(ctx, "postgres") },
		// Its connections closed after each run, as the reference's are
		// (missStub): kept, they took slots the other systems need.
		after: h.pool.Reset,
		// At the judged rate, the same open loop as the HTTP columns':
		// PostgreSQL's CPU per row compared at one rate.
		load: func(ctx context.Context, dur time.Duration, rate float64) Result {
			off := rawRun * o.MissPerRun
			rawRun++
			return Paced(ctx, o.Conns, dur, 0, rate, func(ctx context.Context, _ int, i int64) (int, bool) {
				return 0, rawGet(ctx, h.pool, seedKey("bench:miss:", off+int(i)%o.MissPerRun)) == nil
			})
		}}
	return app, raw, ref, stub.stop, nil
}

// missRanges are the ranges of MissPerRun keys the miss scenario seeds:
// one each for the warm-up, the closed loop and every repetition.
func missRanges(o Options) int { return o.Reps + 2 }

// missSizeKey is the last seeded key of the miss scenario, which no run
// reaches: missSize reads it through kvstack, and the miss reference's
// stub is probed on it (a key without a row is its 503).
func missSizeKey(o Options) string {
	return seedKey("bench:miss:", missRanges(o)*o.MissPerRun-1)
}

// missSize is the size of a GET miss's answer through the stack's edge: of
// the last seeded key, which no run reaches (each stops after MissPerRun
// keys of its range, most runs long before).
func (h *harness) missSize(ctx context.Context) (int, error) {
	key := missSizeKey(h.o)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.o.Nginx+"/api?key="+key, nil)
	resp, err := h.edge.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET miss probe: status %d: %s (%v)", resp.StatusCode, body, err)
	}
	return len(body), nil
}

// missOp GETs the keys from off on through the edge at base, ok on a 200;
// notMiss, when not nil, counts the answers not from PostgreSQL.
func (h *harness) missOp(base string, off int, notMiss *atomic.Int64) Op {
	return func(ctx context.Context, w int, i int64) (int, bool) {
		key := seedKey("bench:miss:", off+int(i))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api?key="+key, nil)
		resp, err := h.clients[w].Do(req)
		if err != nil {
			return 0, false
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && notMiss != nil && !bytes.Contains(body, []byte(`"source":"postgres"`)) {
			notMiss.Add(1)
		}
		return resp.StatusCode, err == nil && resp.StatusCode == 200
	}
}

func rawGet(ctx context.Context, pool *pgxpool.Pool, key string) error {
	var (
		k, v    string
		ts      time.Time
		id      [16]byte
		deleted bool
	)
	return pool.QueryRow(ctx, `SELECT key, value, last_updated, op_id, deleted FROM kv_store WHERE key = $1`, key).
		Scan(&k, &v, &ts, &id, &deleted)
}
