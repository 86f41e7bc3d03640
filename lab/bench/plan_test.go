package bench

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestPlanLoadRates(t *testing.T) {
	got := PlanLoad{Requests: 1_000_000, ReadShare: 0.95, HitRatio: 0.99}.Rates()
	want := map[string]float64{opHit: 940_500, opMiss: 9_500, opPut: 50_000, opApply: 50_000}
	for op, w := range want {
		if math.Abs(got[op]-w) > 1e-6 {
			t.Errorf("%s: %v a second, want %v", op, got[op], w)
		}
	}
}

// A report of round figures: every tier's cores, nodes and bounds are
// worked out by hand below.
func planCosts() OpCosts {
	return OpCosts{
		opHit:   {"nginx": 30, "mtail": 10, rowReplicas: 60, "redis": 10, "jaeger": 2},
		opMiss:  {"nginx": 40, "mtail": 10, rowReplicas: 150, "redis": 30, "postgres": 50, "jaeger": 4},
		opPut:   {"nginx": 30, "mtail": 10, rowReplicas: 100, "rabbitmq": 100, "jaeger": 3},
		opApply: {"consumer": 40, "redis": 10, "rabbitmq": 50, "postgres": 20, "jaeger": 4},
	}
}

func TestMakePlan(t *testing.T) {
	// 1 M requests/s: 940,500 hits, 9,500 misses, 50,000 writes.
	p, err := MakePlan(planCosts(), PlanLoad{1_000_000, 0.95, 0.99}, PlanNodes{Cores: 8, Utilisation: 0.5, PrimaryCores: 16})
	if err != nil {
		t.Fatal(err)
	}
	tiers := map[string]TierPlan{}
	for _, tp := range p.Tiers {
		tiers[tp.Name] = tp
	}
	for _, tc := range []struct {
		tier  string
		cores float64
		nodes int
		count string
	}{
		// 940,500 × 40 µs + 9,500 × 50 + 50,000 × 40 = 40.095 cores, 11
		// nodes of 4 usable; but mtail's 1 M lines × 10 µs are 10 cores,
		// half of one a node: 20 nodes.
		{tierEdge, 40.095, 20, "20 nginx"},
		// 940,500 × 60 + 9,500 × 150 + 50,000 × 100 = 62.855 cores; a replica
		// is one core filled to half: 126 replicas, 8 a node.
		{tierAPI, 62.855, 16, "126 replicas"},
		// 50,000 × 40 µs = 2 cores: 1 node's worth, but never fewer than 2.
		{tierConsumer, 2, 2, "2 consumers"},
		// 9.405 + 0.285 + 0.5 = 10.19 cores: 21 shards of half a core, a
		// replica each: 42 processes on 6 nodes.
		{tierRedis, 10.19, 6, "21 shards"},
		// 50,000 × 150 µs = 7.5 cores: 2 nodes' worth, but a quorum needs 3.
		{tierRabbit, 7.5, 3, "3 nodes, 15 quorum queues"},
		// 9,500 × 50 + 50,000 × 20 = 1.475 cores: one primary and its standby.
		{tierPostgres, 1.475, 2, "1 primary of 16 cores"},
		// 1.881 + 0.038 + 0.15 + 0.2 = 2.269 cores.
		{tierJaeger, 2.269, 1, "1 collectors"},
	} {
		got := tiers[tc.tier]
		if math.Abs(got.Cores-tc.cores) > 1e-6 || got.Nodes != tc.nodes || !strings.HasPrefix(got.Count, tc.count) {
			t.Errorf("%s: %.3f cores, %d nodes, %q; want %.3f, %d, %q…", tc.tier, got.Cores, got.Nodes, got.Count, tc.cores, tc.nodes, tc.count)
		}
	}
	// A queue: half of one core at 150 µs a message, 3,333 msg/s: 15 queues for 50,000.
	if !p.QueueRateEstimated || math.Abs(p.QueueRate-10_000.0/3) > 1e-6 || p.Queues != 15 {
		t.Errorf("queues: %v at %.1f msg/s (estimated %v), want 15 at 3333.3, estimated", p.Queues, p.QueueRate, p.QueueRateEstimated)
	}
	// One primary of 16 cores at half: 8 cores for 1.475 at 50,000 writes/s.
	if math.Abs(p.PrimaryWrites-50_000*8/1.475) > 1e-6 || p.Partitions != 1 {
		t.Errorf("one primary carries %.0f writes/s, %d partitions; want %.0f, 1", p.PrimaryWrites, p.Partitions, 50_000*8/1.475)
	}
	if p.NodeCount() != 20+16+2+6+3+2+1 {
		t.Errorf("%d nodes in all", p.NodeCount())
	}
}

// A queue rate measured elsewhere replaces the estimate; a load past one
// primary partitions.
func TestMakePlanBounds(t *testing.T) {
	p, err := MakePlan(planCosts(), PlanLoad{10_000_000, 0.5, 0.9}, PlanNodes{Cores: 16, Utilisation: 0.5, PrimaryCores: 8, QueueRate: 20_000})
	if err != nil {
		t.Fatal(err)
	}
	// 5 M writes/s, 10,000 msg/s a queue at half of 20,000.
	if p.QueueRateEstimated || p.QueueRate != 10_000 || p.Queues != 500 {
		t.Errorf("queues: %d at %.0f msg/s (estimated %v), want 500 at 10,000, measured", p.Queues, p.QueueRate, p.QueueRateEstimated)
	}
	// PostgreSQL: 500,000 misses × 50 µs + 5 M writes × 20 µs = 125 cores,
	// 4 usable a primary: 32 partitions, each with its standby.
	if p.Partitions != 32 {
		t.Errorf("%d partitions, want 32", p.Partitions)
	}
	for _, tp := range p.Tiers {
		if tp.Name == tierPostgres && (tp.Nodes != 64 || !strings.HasPrefix(tp.Count, "32 partitions")) {
			t.Errorf("PostgreSQL: %d nodes, %q", tp.Nodes, tp.Count)
		}
	}
	for _, bad := range []struct {
		l PlanLoad
		n PlanNodes
	}{
		{PlanLoad{0, 0.9, 0.9}, PlanNodes{8, 0.5, 8, 0}},
		{PlanLoad{1000, 1.5, 0.9}, PlanNodes{8, 0.5, 8, 0}},
		{PlanLoad{1000, 0.9, 0.9}, PlanNodes{0, 0.5, 8, 0}},
		{PlanLoad{1000, 0.9, 0.9}, PlanNodes{8, 0, 8, 0}},
		{PlanLoad{1000, 0.9, 0.9}, PlanNodes{8, 0.5, 0, 0}},
	} {
		if _, err := MakePlan(planCosts(), bad.l, bad.n); err == nil {
			t.Errorf("MakePlan(%+v, %+v) planned", bad.l, bad.n)
		}
	}
}

// The plan reads each operation's kvstack column; a report without one
// fails, naming what is missing.
func TestRowCosts(t *testing.T) {
	r := &Report{}
	for _, op := range []string{opHit, opPut} {
		table := NewCPUTable(op, "request", cpuRowsHTTP...)
		table.Add(colKVStack, map[string]float64{"nginx": 30, "mtail": 10, "api1": 20, "api2": 22, "redis": 5})
		table.Add(colKVStack, map[string]float64{"nginx": 34, "mtail": 12, "api1": 24, "api2": 26, "redis": 7})
		table.Add(colKVStack, map[string]float64{"nginx": 32, "mtail": 11, "api1": 22, "api2": 24, "redis": 6})
		r.Sections = append(r.Sections, &Section{ID: op, CPU: []*CPUTable{table}})
	}
	cols := map[string]string{opHit: colKVStack, opMiss: colKVStack, opPut: colKVStack, opApply: colKVStack}
	got, err := RowCosts(r, cols)
	if !errors.Is(err, ErrMissingFigures) || !strings.Contains(err.Error(), "GET miss") || !strings.Contains(err.Error(), "apply") {
		t.Errorf("a report without the miss and the apply: %v", err)
	}
	if c := got[opHit]; c["nginx"] != 32 || c[rowReplicas] != 46 || c["api1"] != 0 || c[rowTotal] != 0 {
		t.Errorf("GET hit: %v, want nginx 32, replicas 46 (medians), no api1 or total", c)
	}
	if tc := TierCosts(got)[opHit]; tc[tierEdge] != 43 || tc[tierAPI] != 46 || tc[tierRedis] != 6 {
		t.Errorf("GET hit by tier: %v", tc)
	}
	if _, err := RowCosts(r, map[string]string{opHit: "10 % sampling"}); err == nil || !strings.Contains(err.Error(), `"10 % sampling" column`) {
		t.Errorf("a column the report lacks: %v", err)
	}
}

func TestCheckAgainstHA(t *testing.T) {
	single := OpCosts{opHit: {"nginx": 30, rowReplicas: 60, "mtail": 10}, opApply: {"consumer": 40}}
	ha := OpCosts{opHit: {"nginx": 60, rowReplicas: 90}, opApply: {"consumer": 50, "rabbitmq": 80}}
	got := CheckAgainstHA(single, ha)
	want := []PlanCheck{
		{opHit, "nginx", tierEdge, 30, 60, 2},
		{opHit, rowReplicas, tierAPI, 60, 90, 1.5},
		{opApply, "consumer", tierConsumer, 40, 50, 1.25},
	}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%v, want %v", got[i], want[i])
		}
	}
}

func TestCount(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 940_500: "940,500", 1_000_000: "1,000,000"} {
		if got := count(v); got != want {
			t.Errorf("count(%v) = %q, want %q", v, got, want)
		}
	}
}
