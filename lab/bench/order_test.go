package bench

import (
	"slices"
	"testing"
)

// Over any two repetitions, every system runs once before and once after
// every other: an order effect falls on each side of a comparison in turn
// (on 7 December "auth off" ran right after kvstack in every repetition).
func TestRunOrderPutsEveryPairBothWays(t *testing.T) {
	for n := 1; n <= 9; n++ {
		for rep := range 4 {
			got := runOrder(n, rep)
			sorted := slices.Sorted(slices.Values(got))
			for i, v := range sorted {
				if v != i {
					t.Fatalf("runOrder(%d, %d) = %v: not each system once", n, rep, got)
				}
			}
		}
		for rep := 0; rep < 4; rep += 2 {
			a, b := runOrder(n, rep), runOrder(n, rep+1)
			for x := range n {
				for y := range n {
					if x == y {
						continue
					}
					before := func(o []int) bool { return slices.Index(o, x) < slices.Index(o, y) }
					if before(a) == before(b) {
						t.Fatalf("n=%d, repetitions %d and %d: system %d runs before %d in both (%v, %v)", n, rep+1, rep+2, x, y, a, b)
					}
				}
			}
		}
	}
}

func TestProfileName(t *testing.T) {
	for col, want := range map[string]string{colFull: "100pct-sampling", colHarness: "as-shipped-run-by-the-harness", colAuthOff: "auth-off"} {
		if got := profileName(col); got != want {
			t.Errorf("profileName(%q) = %q, want %q", col, got, want)
		}
	}
}
