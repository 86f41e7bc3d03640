package bench

import (
	"math"
	"strings"
	"testing"
)

func TestJudgedRate(t *testing.T) {
	tests := []struct {
		name        string
		capacity    map[string]float64
		share       float64
		want        float64
		wantSlowest string
	}{
		{"the slowest column's share, two figures", map[string]float64{"kvstack": 4321, "reference": 9000, "baseline": 15000}, 0.7, 3000, "kvstack"},
		{"a variant the slowest", map[string]float64{"kvstack": 5000, "100 % sampling": 4480, "reference": 9000}, 0.7, 3100, "100 % sampling"},
		{"0.7 × 1000 is 700, not 690", map[string]float64{"a": 1000}, 0.7, 700, "a"},
		{"below a thousand", map[string]float64{"a": 873, "b": 2000}, 0.7, 610, "a"},
		{"a tie: the first by name", map[string]float64{"b": 2000, "a": 2000}, 0.5, 1000, "a"},
		{"the whole capacity", map[string]float64{"a": 1234}, 1, 1200, "a"},
		{"a slow column", map[string]float64{"a": 13.9}, 0.7, 9.7, "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, slowest, err := JudgedRate(tc.capacity, tc.share)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-tc.want) > 1e-9 || slowest != tc.wantSlowest {
				t.Errorf("JudgedRate(%v, %g) = %g, %q; want %g, %q", tc.capacity, tc.share, got, slowest, tc.want, tc.wantSlowest)
			}
			for name, c := range tc.capacity {
				if got > tc.share*c {
					t.Errorf("rate %g above %g × %s's %g/s", got, tc.share, name, c)
				}
			}
		})
	}
}

func TestJudgedRateRefuses(t *testing.T) {
	tests := []struct {
		name     string
		capacity map[string]float64
		share    float64
		want     string
	}{
		{"no column", nil, 0.7, "no column"},
		{"a column that did nothing", map[string]float64{"kvstack": 4000, "reference": 0}, 0.7, `"reference"`},
		{"a column not measured", map[string]float64{"kvstack": math.NaN()}, 0.7, `"kvstack"`},
		{"no share", map[string]float64{"kvstack": 4000}, 0, "share"},
		{"more than the capacity", map[string]float64{"kvstack": 4000}, 1.2, "share"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := JudgedRate(tc.capacity, tc.share)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("JudgedRate(%v, %g) = %g, %v; want an error naming %s", tc.capacity, tc.share, got, err, tc.want)
			}
		})
	}
}

func TestShortOf(t *testing.T) {
	tests := []struct {
		offered, achieved float64
		want              bool
	}{
		{3000, 3000, false},
		{3000, 2941, false}, // 1.97 % short
		{3000, 2940, false}, // 2 % exactly
		{3000, 2939, true},
		{3000, 0, true},
		{3000, math.NaN(), true},
		{3000, 3100, false},
		{0, 10, false}, // nothing offered: a closed loop
	}
	for _, tc := range tests {
		if got := ShortOf(tc.offered, tc.achieved, RateTolerance); got != tc.want {
			t.Errorf("ShortOf(%g, %g, %g) = %v, want %v", tc.offered, tc.achieved, RateTolerance, got, tc.want)
		}
	}
}

func TestJudgedOnly(t *testing.T) {
	runs := map[string][]float64{"kvstack": {3000, 2999, 3001}, "reference": {3000, 2800, 3000}}
	short := ShortColumns(3000, RateTolerance, runs)
	if len(short) != 1 || short["reference"] != "3000, 2800, 3000" {
		t.Fatalf("ShortColumns = %v, want the reference alone, with its rates", short)
	}
	met := AtMost("GET hit ÷ reference", 1.2, 1.5, fmtTimes)
	got := JudgedOnly(met, 3000, short, "kvstack", "reference")
	if got.Met || !strings.Contains(got.Notes, "reference fell short of the offered 3000/s") || !strings.Contains(got.Notes, "not judged") {
		t.Errorf("a target on a short column: %+v, want not met, the column named", got)
	}
	if got := JudgedOnly(met, 3000, short, "kvstack", "auth off"); got != met {
		t.Errorf("a target on columns that kept the rate: %+v, want it unchanged", got)
	}
	rep := JudgedOnly(Reported("a figure", 2, fmtTimes), 3000, short, "reference")
	if rep.Want != "" || !strings.Contains(rep.Notes, "reference fell short") || strings.Contains(rep.Notes, "not judged") {
		t.Errorf("a reported figure on a short column: %+v, want it noted, no target", rep)
	}
}
