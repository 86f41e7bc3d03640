package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
)

// rowAPIs is the API replicas of a scale-out edge together.
const rowAPIs = "API replicas"

// hitScaleOut measures GET hits through an nginx of the harness's in
// front of 2, then 4, bin/api replicas, alternated, and how the requests
// were shared.
func (h *harness) hitScaleOut(ctx context.Context) (*Section, error) {
	o := h.o
	sec := &Section{ID: "hit", Title: titleHitScaleOut,
		Setup: fmt.Sprintf("%d connections, GET /api?key=K over %d keys seeded in PostgreSQL and read once through the stack's edge, so that the Redis Cluster holds them. "+
			"N bin/api replicas run by the harness with the environment of the stack's api1 and api2 in turn (GOMAXPROCS included), behind an nginx rendered from the stack's template with N upstream servers; N = 2 and 4 alternate, in %d rounds of %s each. "+
			"A request counts when it answers 200; each replica's share is read from its kvstack_http_requests_total. CPU: nginx, the N replicas together, the six Redis nodes together, Jaeger (what a hit touches).",
			o.Conns, o.HitKeys, o.Reps, o.Dur)}
	if _, _, err := h.warmHits(ctx); err != nil {
		return sec, err
	}
	var systems []system
	edges := map[string]*edge{}
	nextAdmin := 30 // the replicas' admin listeners, one after the other
	for i, n := range replicaCounts {
		name := fmt.Sprintf("%d replicas", n)
		ups, admins := make([]string, n), make([]string, n)
		for j := range ups {
			ups[j] = o.port(10*(i+1) + 1 + j)
			admins[j] = o.port(nextAdmin)
			nextAdmin++
		}
		e, err := h.startReplicas(ctx, fmt.Sprintf("scale%d", n), o.port(10*(i+1)), ups, "", admins, false)
		if err != nil {
			return sec, err
		}
		defer e.stop()
		edges[name] = e
		systems = append(systems, h.replicaSystem(name, e))
	}
	table := NewCPUTable(fmt.Sprintf("GET hit, closed loop of %d connections", o.Conns), "request", "nginx", rowAPIs, "redis", "jaeger")
	runs, err := h.alternate(ctx, "scale-out hit", sec, table, systems)
	if err != nil {
		return sec, err
	}
	sec.CPU = []*CPUTable{table}
	for _, s := range systems {
		rs := runs[s.name]
		sec.Figures = append(sec.Figures, Figure{s.name, "req/s", rates(rs)}, Figure{s.name + " p99", "ms", p99s(rs)})
	}
	var failed float64
	for _, s := range systems {
		for _, r := range runs[s.name] {
			failed += float64(r.Errors)
		}
		shares, err := h.replicaShares(ctx, edges[s.name])
		if err != nil {
			return sec, err
		}
		sec.Notes = append(sec.Notes, fmt.Sprintf("%s: requests served by each replica over the warm-up and the runs: %s", s.name, shares))
	}
	sec.Notes = append(sec.Notes, fmt.Sprintf("load average after the runs: %s", loadAvg()))
	two, four := fmt.Sprintf("%d replicas", replicaCounts[0]), fmt.Sprintf("%d replicas", replicaCounts[1])
	sec.Targets = []Target{
		AtMost("GET hit, N replicas: failed requests (all runs)", failed, 0, "%.0f"),
		Reported("GET hit rate, 4 replicas ÷ 2", Ratio(medianRate(runs[four]), medianRate(runs[two])), fmtTimes),
		Reported("GET hit: replicas' CPU per request, 4 replicas ÷ 2", Ratio(table.Median(rowAPIs, four), table.Median(rowAPIs, two)), fmtTimes),
	}
	sec.Notes = append(sec.Notes, perCoreNotes(table, two, "request")...)
	return sec, nil
}

// replicaSystem is an edge of N replicas, their CPU in one row, with the
// Redis nodes and Jaeger beside them; a request is ok on a 200.
func (h *harness) replicaSystem(name string, e *edge) system {
	op := h.get(func(i int64) string { return e.url + hitPath(int(i%int64(h.o.HitKeys))) }, 200)
	return system{name: name, op: op, procs: func(ctx context.Context) ([]Proc, error) {
		var procs []Proc
		for _, p := range e.procs {
			if strings.HasPrefix(p.Role, "api") {
				p.Role = rowAPIs
			}
			procs = append(procs, p)
		}
		engines, err := h.stackProcs(ctx, "redis", "jaeger")
		return append(procs, engines...), err
	}}
}

// replicaShares is each replica's count of requests answered, from the
// /metrics of its admin listener, in order.
func (h *harness) replicaShares(ctx context.Context, e *edge) (string, error) {
	var parts []string
	for i, addr := range e.admins {
		if addr == "" {
			return "", fmt.Errorf("requests of the replica on %s: its admin listener is on a free port, unknown", e.ups[i])
		}
		n, err := sumCounters(ctx, []string{portOf(addr)}, "kvstack_http_requests_total")
		if err != nil {
			return "", fmt.Errorf("requests of the replica on %s: %w", addr, err)
		}
		parts = append(parts, fmt.Sprintf("%.0f", n))
	}
	return strings.Join(parts, " / "), nil
}

// perCoreNotes say, from the CPU per operation of column, how many
// operations per second one core could carry in each process (its
// ceiling on a machine of its own), and on this machine's cores shared
// by all of them: where the cores go.
func perCoreNotes(t *CPUTable, column, op string) []string {
	type ceiling struct {
		row  string
		rate float64
	}
	var (
		parts []string
		cs    []ceiling
	)
	for _, row := range t.Rows {
		v := t.Median(row, column)
		if math.IsNaN(v) || v <= 0 || row == rowTotal {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s µs → %.0f/s", row, fmtMicros(v), 1e6/v))
		cs = append(cs, ceiling{row, 1e6 / v})
	}
	if len(cs) < 2 {
		return nil
	}
	slices.SortFunc(cs, func(a, b ceiling) int { return cmp.Compare(a.rate, b.rate) })
	total := t.Median(rowTotal, column)
	return []string{
		fmt.Sprintf("Where the cores go (%s): CPU per %s of each process (an engine's is the sum of its nodes'), and the %ss per second one core would carry for that process alone: %s.", column, op, op, strings.Join(parts, "; ")),
		fmt.Sprintf("Every process together spends %s µs per %s: this machine's %d cores, shared by all, carry at most %.0f/s, whatever N is. With a machine per node, each process has cores of its own: the first bound is %s (%.0f/s per core), which N of them on N machines raise N-fold, until the next one, %s (%.0f/s per core).",
			fmtMicros(total), op, runtime.NumCPU(), float64(runtime.NumCPU())*1e6/total, cs[0].row, cs[0].rate, cs[1].row, cs[1].rate),
	}
}
