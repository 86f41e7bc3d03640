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
	runs := o.Reps + 1 // and a warm-up
	sec := &Section{Title: "GET cache miss (PostgreSQL read + cache fill)",
		Setup: fmt.Sprintf("%d connections through nginx, each request a key never read before (%d rows seeded straight into PostgreSQL, never cached; a run stops at %s or after %d keys). "+
			"Baseline: raw pgx primary-key SELECT of the same columns from %d goroutines over a pool of %d connections (both API replicas' pools together), from the harness (PostgreSQL's CPU only).",
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
	app, raw := h.missSystems(&notMiss)
	table := NewCPUTable("GET miss", "request", cpuRowsHTTP...)
	got, err := h.alternate(ctx, "get-miss", sec, table, []system{app, raw})
	if err != nil {
		return sec, err
	}
	for i, r := range got[colKVStack] {
		if r.OK >= int64(o.MissPerRun) {
			sec.Notes = append(sec.Notes, fmt.Sprintf("run %d used up its %d keys before %s: the figure is bounded by the count", i+1, o.MissPerRun, o.Dur))
		}
	}
	if n := notMiss.Load(); n > 0 {
		sec.Notes = append(sec.Notes, fmt.Sprintf("%d responses were not served from PostgreSQL", n))
	}
	sec.CPU = []*CPUTable{table}
	sec.Figures = []Figure{
		{"kvstack GET miss", "req/s", rates(got[colKVStack])}, {"raw PK SELECT (pgx)", "rows/s", rates(got[colBaseline])},
		{"kvstack p99", "ms", p99s(got[colKVStack])}, {"raw SELECT p99", "ms", p99s(got[colBaseline])},
	}
	sec.Targets = []Target{
		Reported("GET miss throughput ÷ raw PK SELECT", Ratio(medianRate(got[colKVStack]), medianRate(got[colBaseline])), fmtTimes),
		AtMostRuns("GET miss: PostgreSQL's CPU per request ÷ the raw SELECT's", table.Runs("postgres", colKVStack), table.Runs("postgres", colBaseline), 1.5, fmtTimes),
	}
	return sec, nil
}

// missSystems are kvstack reading keys never read before (the warm-up
// takes the first range, each run the next) and the raw SELECT of the
// same keys; notMiss counts the answers not served by PostgreSQL.
func (h *harness) missSystems(notMiss *atomic.Int64) (app, raw system) {
	o := h.o
	var appRun, rawRun int
	app = h.stackSystem(nil, "api-get-miss-cpu")
	app.load = func(ctx context.Context, dur time.Duration) Result {
		off := appRun * o.MissPerRun
		appRun++
		return Closed(ctx, o.Conns, dur, int64(o.MissPerRun), h.missOp(off, notMiss))
	}
	raw = system{name: colBaseline,
		procs: func(ctx context.Context) ([]Proc, error) { return h.stackProcs(ctx, "postgres") },
		load: func(ctx context.Context, dur time.Duration) Result {
			off := rawRun * o.MissPerRun
			rawRun++
			return Closed(ctx, o.Conns, dur, 0, func(ctx context.Context, _ int, i int64) (int, bool) {
				return 0, rawGet(ctx, h.pool, seedKey("bench:miss:", off+int(i)%o.MissPerRun)) == nil
			})
		}}
	return app, raw
}

// missOp GETs the keys from off on through the edge, ok on a 200.
func (h *harness) missOp(off int, notMiss *atomic.Int64) Op {
	return func(ctx context.Context, w int, i int64) (int, bool) {
		key := seedKey("bench:miss:", off+int(i))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.o.Nginx+"/api?key="+key, nil)
		resp, err := h.clients[w].Do(req)
		if err != nil {
			return 0, false
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && !bytes.Contains(body, []byte(`"source":"postgres"`)) {
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
