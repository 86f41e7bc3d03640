package bench

import (
	"strings"
	"testing"
	"time"
)

// A GET hit whose reference fell behind the offered rate: the targets on
// it are not met, whatever their ratio; the others are judged.
func TestHitTargetsNotJudgedOnAShortColumn(t *testing.T) {
	table, closed := NewCPUTable("GET hit", "request", cpuRowsHTTP...), NewCPUTable("GET hit", "request", cpuRowsHTTP...)
	perOp := func(api float64) map[string]float64 {
		return map[string]float64{"nginx": 30, "api1": api / 2, "api2": api / 2}
	}
	a := &atRate{rate: 3000, slowest: colKVStack, closed: map[string]Result{}, closedCPU: closed, runs: map[string][]Result{}}
	for col, api := range map[string]float64{colKVStack: 100, colHarness: 100, colUntraced: 99, colFull: 104, colAuthOff: 98, colTLSOff: 100, colReference: 80, colBaseline: 20} {
		closed.Add(col, perOp(api*0.8))
		a.closed[col] = Result{OK: 4 * 4000, Elapsed: 4 * time.Second}
		for range 3 {
			table.Add(col, perOp(api))
			a.runs[col] = append(a.runs[col], Result{OK: 3000 * 8, Elapsed: 8 * time.Second})
		}
	}
	a.runs[colReference][1] = Result{OK: 2800 * 8, Elapsed: 8 * time.Second}
	achieved := map[string][]float64{}
	for name, rs := range a.runs {
		achieved[name] = rates(rs)
	}
	a.short = ShortColumns(a.rate, RateTolerance, achieved)

	got := map[string]Target{}
	for _, tg := range hitTargets(table, a) {
		got[tg.Name] = tg
	}
	ref := got["GET hit: API replicas' CPU per request ÷ the reference handler's (one Redis read), as shipped"]
	if ref.Got == "" || ref.Met || !strings.Contains(ref.Notes, "reference fell short") {
		t.Errorf("kvstack ÷ the short reference, 1.25 ×: %+v, want not met, the reference named", ref)
	}
	tracing := got["GET hit: tracing's share of the replicas' CPU, as shipped (run by the harness, as the variants)"]
	if !tracing.Met || tracing.Notes != "" {
		t.Errorf("tracing's share, on columns that kept the rate: %+v, want met, no note", tracing)
	}
	thr := got["GET hit throughput ÷ reference (handler + one Redis read) (closed loop)"]
	if thr.Got != "1.00 ×" {
		t.Errorf("throughput ÷ reference from the closed loops: %+v, want 1.00 ×", thr)
	}
	fast := got["GET hit: replicas' CPU per request under load through nginx, closed loop, ÷ the FastAPI design's (196 µs, wrk's closed loop)"]
	if fast.Got != "0.41 ×" {
		t.Errorf("FastAPI's comparison, from the closed loop's 80 µs: %+v, want 0.41 ×", fast)
	}
}

// Each CPU table says how its columns ran.
func TestJudgedTableTitles(t *testing.T) {
	table, closed := NewCPUTable("PUT accepted", "request"), NewCPUTable("PUT accepted", "request")
	a := &atRate{rate: 2100}
	a.tableTitles("PUT accepted", Full(), table, closed)
	if table.Title != "PUT accepted, open loop at 2100/s, 64 connections (judged)" || !strings.Contains(closed.Title, "closed loop") {
		t.Errorf("titles %q, %q", table.Title, closed.Title)
	}
}
