package bench

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// The CPU per operation of the columns of a scenario is judged at one
// offered rate, the same for every column: a system that answers faster
// spends less CPU per request in a closed loop by itself (more work per
// wake-up), so ratios of columns each run as fast as it can measure their
// speeds as much as their costs. On 7 December the closed loop gave the
// GET hit 2.41 × and the PUT 1.68 × the reference; an open loop at one
// rate for every column, 1.21 × and 1.26 ×.

// JudgedShare is the share of the slowest column's closed-loop rate at
// which a scenario's columns are judged: below every column's capacity,
// with room for the machine's drift between the calibration and the
// repetitions.
const JudgedShare = 0.7

// RateTolerance is how far below the offered rate a column's achieved
// rate may fall in a judged run and still be judged: one that falls
// further behind is running at its own rate, not the offered one.
const RateTolerance = 0.02

// JudgedRate is the rate at which a scenario's columns are judged: share
// of the lowest of the columns' closed-loop rates (capacity, operations a
// second by column), rounded down to two significant figures. slowest
// names that column (the first by name when several tie). Every column
// must have a positive, measured capacity: a column that did not run
// would leave the rate above what it can do.
func JudgedRate(capacity map[string]float64, share float64) (rate float64, slowest string, err error) {
	if len(capacity) == 0 {
		return 0, "", fmt.Errorf("judged rate: no column measured")
	}
	if !(share > 0 && share <= 1) {
		return 0, "", fmt.Errorf("judged rate: share %g, want (0, 1]", share)
	}
	low := math.Inf(1)
	for _, name := range slices.Sorted(maps.Keys(capacity)) {
		c := capacity[name]
		if !(c > 0) || math.IsInf(c, 0) {
			return 0, "", fmt.Errorf("judged rate: column %q's closed-loop rate is %g/s", name, c)
		}
		if c < low {
			low, slowest = c, name
		}
	}
	rate = roundDown(share*low, 2)
	if rate <= 0 {
		return 0, "", fmt.Errorf("judged rate: %g × %s's %g/s rounds to nothing", share, slowest, low)
	}
	return rate, slowest, nil
}

// roundDown rounds v > 0 down to digits significant figures.
func roundDown(v float64, digits int) float64 {
	if !(v > 0) {
		return 0
	}
	unit := math.Pow(10, math.Floor(math.Log10(v))-float64(digits-1))
	// The small excess keeps 0.7 × 1000 (699.999…) at 700.
	return math.Floor(v/unit+1e-9) * unit
}

// ShortOf is whether achieved (operations a second) fell short of the
// offered rate by more than tolerance (a share of offered).
func ShortOf(offered, achieved, tolerance float64) bool {
	return offered > 0 && !(achieved >= offered*(1-tolerance))
}

// ShortColumns are the columns of runs (judged runs by column) that fell
// short of offered by more than tolerance in any run, each with its
// runs' achieved rates, in name order.
func ShortColumns(offered, tolerance float64, runs map[string][]float64) map[string]string {
	out := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(runs)) {
		short := false
		achieved := make([]string, len(runs[name]))
		for i, r := range runs[name] {
			short = short || ShortOf(offered, r, tolerance)
			achieved[i] = fmt.Sprintf("%.0f", r)
		}
		if short {
			out[name] = strings.Join(achieved, ", ")
		}
	}
	return out
}

// JudgedOnly makes t, a target comparing columns cols, not met when one of
// them fell short of the offered rate (short, as ShortColumns gives it):
// its CPU per operation was measured at another rate than the others'.
// A figure without a target is only noted.
func JudgedOnly(t Target, offered float64, short map[string]string, cols ...string) Target {
	var notes []string
	for _, c := range cols {
		if achieved, ok := short[c]; ok {
			notes = append(notes, fmt.Sprintf("%s fell short of the offered %.0f/s by more than %.0f %% (achieved %s/s)", c, offered, RateTolerance*100, achieved))
		}
	}
	if len(notes) == 0 {
		return t
	}
	if t.Want != "" {
		t.Met = false
		notes = append(notes, "not judged")
	}
	if t.Notes != "" {
		notes = append([]string{t.Notes}, notes...)
	}
	t.Notes = strings.Join(notes, "; ")
	return t
}
