package bench

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestRatioAndShare(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name      string
		got, want float64
	}{
		{"ratio", Ratio(90, 60), 1.5},
		{"ratio of unknown", Ratio(nan, 60), nan},
		{"ratio over zero", Ratio(90, 0), nan},
		{"share", TracingShare(100, 85), 0.15},
		{"share, untraced measured slower", TracingShare(100, 104), 0},
		{"share of unknown", TracingShare(100, nan), nan},
	}
	for _, tt := range tests {
		same := tt.got == tt.want || (math.IsNaN(tt.got) && math.IsNaN(tt.want)) || math.Abs(tt.got-tt.want) < 1e-12
		if !same {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestTargets(t *testing.T) {
	tests := []struct {
		name    string
		target  Target
		met     bool
		got     string
		wantStr string
	}{
		{"at most, met at the limit", AtMost("x", 1.5, 1.5, fmtTimes), true, "1.50 ×", "≤ 1.50 ×"},
		{"at most, not met", AtMost("x", 1.51, 1.5, fmtTimes), false, "1.51 ×", "≤ 1.50 ×"},
		{"below, not met at the limit", Below("x", 100, 100, "%.0f"), false, "100", "< 100"},
		{"at least", AtLeast("x", 5, 5, "%.1f ×"), true, "5.0 ×", "≥ 5.0 ×"},
		{"unknown is never met", AtMost("x", math.NaN(), 1.5, fmtTimes), false, "not measured", "≤ 1.50 ×"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.target.Met != tt.met || tt.target.Got != tt.got || tt.target.Want != tt.wantStr {
				t.Errorf("got %+v, want met=%v got=%q want=%q", tt.target, tt.met, tt.got, tt.wantStr)
			}
		})
	}
	if r := Reported("x", 2, fmtTimes); r.Want != "" || r.Got != "2.00 ×" {
		t.Errorf("Reported = %+v", r)
	}
}

func TestLagTarget(t *testing.T) {
	met := HistDelta(nil, map[float64]float64{0.05: 900, 0.1: 995, 0.25: 1000, math.Inf(1): 1000})
	if tg := LagTarget("lag", met, 0.1); !tg.Met || !strings.Contains(tg.Got, "99.50 % within 100 ms") {
		t.Errorf("99.5 %% within: %+v, want met", tg)
	}
	notMet := HistDelta(nil, map[float64]float64{0.05: 900, 0.1: 985, 0.25: 1000, math.Inf(1): 1000})
	if tg := LagTarget("lag", notMet, 0.1); tg.Met {
		t.Errorf("98.5 %% within: %+v, want not met", tg)
	}
	if tg := LagTarget("lag", Hist{}, 0.1); tg.Met {
		t.Errorf("no observation: %+v, want not met", tg)
	}
}

func TestCPUTable(t *testing.T) {
	tb := NewCPUTable("GET hit", "request", cpuRowsHTTP...)
	tb.Add(colKVStack, map[string]float64{"nginx": 20, "api1": 30, "api2": 32, "redis": 8})
	tb.Add(colKVStack, map[string]float64{"nginx": 22, "api1": 34, "api2": 30, "redis": 10})
	tb.Add(colKVStack, map[string]float64{"nginx": 21, "api1": 31, "api2": 31, "redis": 9})
	tb.Add(colReference, map[string]float64{"nginx": 19, "api1": 20, "api2": 21, "redis": 7})

	if got, want := tb.Runs(rowReplicas, colKVStack), []float64{62, 64, 62}; !equal(got, want) {
		t.Errorf("api1 + api2 runs = %v, want %v", got, want)
	}
	if got, want := tb.Runs(rowTotal, colKVStack), []float64{90, 96, 92}; !equal(got, want) {
		t.Errorf("total runs = %v, want %v", got, want)
	}
	if got := tb.Median(rowReplicas, colKVStack); got != 62 {
		t.Errorf("median of api1 + api2 = %v, want 62", got)
	}
	if got := tb.Median("consumer", colKVStack); !math.IsNaN(got) {
		t.Errorf("median of a process not measured = %v, want NaN", got)
	}
	var b bytes.Buffer
	tb.Write(&b)
	for _, want := range []string{
		"| process | kvstack | reference |",
		"| **api1 + api2** | 62.0 [62.0 – 64.0] | 41.0 |",
		"| consumer | – | – |",
		"| **total** | 92.0 [90.0 – 96.0] | 67.0 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSampledAt(t *testing.T) {
	tests := []struct {
		ratio float64
		n     int
		want  int
	}{{1, 100, 100}, {0.1, 100, 10}, {0.1, 1000, 100}, {0, 100, 0}, {0.25, 10, 2}}
	for _, tt := range tests {
		got := 0
		for i := range tt.n {
			if SampledAt(i, tt.ratio) {
				got++
			}
		}
		if got != tt.want {
			t.Errorf("ratio %v: %d of %d sampled, want %d", tt.ratio, got, tt.n, tt.want)
		}
	}
}

func TestSummarise(t *testing.T) {
	tests := []struct {
		in   []float64
		want Stats
	}{
		{[]float64{3, 1, 2}, Stats{2, 1, 3}},
		{[]float64{4, 1, 3, 2}, Stats{2.5, 1, 4}},
		{nil, Stats{}},
	}
	for _, tt := range tests {
		if got := Summarise(tt.in); got != tt.want {
			t.Errorf("Summarise(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// The report puts every target in the summary and under its section,
// with its verdict.
func TestReportWrite(t *testing.T) {
	r := &Report{Command: "kvbench", Sections: []*Section{{
		Title: "GET cache hit", Setup: "64 connections.",
		Figures: []Figure{{"kvstack", "req/s", []float64{3000, 3200, 3100}}},
		Targets: []Target{AtMost("ratio", 2.2, 1.5, fmtTimes), Reported("throughput", 0.4, fmtTimes), AtMost("lag", 1, 2, "%.0f")},
		Notes:   []string{"a note"},
	}}}
	var b bytes.Buffer
	r.Write(&b)
	for _, want := range []string{
		"| ratio | 2.20 × | ≤ 1.50 × | **NOT met** |",
		"| throughput | 0.40 × |  | (reported, no target) |",
		"| lag | 1 | ≤ 2 | **met** |",
		"## 1. GET cache hit\n\n64 connections.",
		"| kvstack (req/s) | 3100 | 3000 | 3200 | 3000, 3200, 3100 |",
		"* ratio: **2.20 ×**, wanted ≤ 1.50 ×: **NOT met**",
		"* throughput: **0.40 ×** (no target)",
		"* a note",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestAtMostRunsGivesTheSpread(t *testing.T) {
	tg := AtMostRuns("x", []float64{30, 33, 36}, []float64{20, 20, 20}, 1.5, fmtTimes)
	if tg.Met || tg.Got != "1.65 × [1.50 – 1.80 ×]" || tg.Want != "≤ 1.50 ×" {
		t.Errorf("AtMostRuns = %+v, want 1.65 × [1.50 – 1.80 ×], not met", tg)
	}
	if tg := AtMostRuns("x", nil, []float64{20}, 1.5, fmtTimes); tg.Met || tg.Got != "not measured" {
		t.Errorf("AtMostRuns of no run = %+v, want not measured", tg)
	}
}

func TestEdgeTLSCostIsTheControlLessTLSOff(t *testing.T) {
	tb := NewCPUTable("x", "request", "nginx")
	for _, c := range []struct {
		col   string
		nginx float64
	}{{colHarness, 90}, {colHarness, 100}, {colHarness, 110}, {colTLSOff, 60}, {colTLSOff, 62}, {colTLSOff, 64}} {
		tb.Add(c.col, map[string]float64{"nginx": c.nginx})
	}
	got := EdgeTLSCost("GET hit", tb)
	if len(got) != 3 || got[0].Got != "38.0 µs" || got[1].Got != "61.3 %" {
		t.Errorf("EdgeTLSCost = %+v, want 38.0 µs, 61.3 %%", got)
	}
}

// The PUT's figures of 7 December: auth's +27 % was the machine's load,
// which moved nginx (no auth in it) as much as the replicas.
func TestAuthCostWithItsSpreadAndTheLoadTakenOut(t *testing.T) {
	on, off := []float64{192.6, 259.8, 262.9}, []float64{204.5, 225.2, 195.4}
	ngxOn, ngxOff := []float64{87.2, 123.8, 118.8}, []float64{98.1, 104.5, 88.7}
	tg := LayerCost("x", on, off, 5)
	if want := "27.0 % [-5.8 – 34.5 %]"; tg.Got != want || tg.Met {
		t.Errorf("LayerCost = %q (met %v), want %q, not met", tg.Got, tg.Met, want)
	}
	got := LoadAdjusted(on, off, ngxOn, ngxOff)
	if math.Abs(got-0.5) > 0.1 {
		t.Errorf("LoadAdjusted = %.2f %%, want 0.5 %% (run by run 6.0, -2.6, 0.5)", got)
	}
	if !math.IsNaN(LoadAdjusted(on, nil, ngxOn, ngxOff)) {
		t.Error("LoadAdjusted without runs: want NaN")
	}
	if tg := LayerCost("x", nil, off, 5); tg.Met {
		t.Error("LayerCost without runs is met")
	}
}
