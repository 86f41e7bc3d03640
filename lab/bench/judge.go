package bench

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// atRate is a scenario's columns judged at one offered rate (rate.go):
// each column's closed-loop run, which gives its capacity, and the judged
// repetitions, every column in an open loop at the rate chosen from them.
type atRate struct {
	rate    float64
	slowest string            // the column whose capacity set the rate; "" when Options.Rate did
	closed  map[string]Result // each column's closed-loop run
	// closedCPU is the CPU table of the closed-loop runs.
	closedCPU *CPUTable
	runs      map[string][]Result // the judged runs, by column
	short     map[string]string   // the columns short of the rate: ShortColumns
}

// judgeAtRate warms each system up, runs each once in a closed loop for
// Options.Calib (its capacity; CPU into closed), chooses the rate
// (JudgedRate, or Options.Rate when set), then runs them all in turn at
// that rate, Reps times (CPU into table, the judged figures). A column
// that falls short of the rate is noted in the section.
func (h *harness) judgeAtRate(ctx context.Context, label string, sec *Section, table, closed *CPUTable, systems []system) (*atRate, error) {
	h.warmUp(ctx, systems)
	a := &atRate{closed: map[string]Result{}, closedCPU: closed}
	capacity := map[string]float64{}
	for _, s := range systems {
		if err := h.waitQuiet(ctx); err != nil {
			return a, err
		}
		m, err := h.runSystem(ctx, s, h.o.Calib, 0, false)
		if err != nil {
			return a, fmt.Errorf("closed loop: %w", err)
		}
		Log("%s closed loop: %s %s; %s", label, s.name, m.res, fmtPerOp(m.perOp))
		h.noteFailures(sec, "closed loop", s.name, m.res)
		closed.Add(s.name, m.perOp)
		a.closed[s.name] = m.res
		capacity[s.name] = m.res.Rate()
	}
	a.rate = h.o.Rate
	if a.rate <= 0 {
		var err error
		if a.rate, a.slowest, err = JudgedRate(capacity, JudgedShare); err != nil {
			return a, err
		}
	}
	sec.Setup += " " + a.method(h.o)
	Log("%s: judged at %.0f/s (%s)", label, a.rate, a.why())
	var err error
	a.runs, err = h.repeat(ctx, label, sec, table, systems, a.rate)
	achieved := map[string][]float64{}
	for name, rs := range a.runs {
		achieved[name] = rates(rs)
	}
	a.short = ShortColumns(a.rate, RateTolerance, achieved)
	for _, name := range slices.Sorted(maps.Keys(a.short)) {
		note := fmt.Sprintf("**%s fell short of the offered %.0f/s by more than %.0f %% (achieved %s/s): its ratios are not judged.**", name, a.rate, RateTolerance*100, a.short[name])
		sec.Notes = append(sec.Notes, note)
		Log("%s", note)
	}
	return a, err
}

// why says where the rate came from.
func (a *atRate) why() string {
	if a.slowest == "" {
		return "kvbench -rate"
	}
	return fmt.Sprintf("%.0f %% of the slowest column's closed-loop rate, %s's %.0f/s, rounded down to two figures", JudgedShare*100, a.slowest, a.closed[a.slowest].Rate())
}

// method is the section's sentence on how its columns were run.
func (a *atRate) method(o Options) string {
	return fmt.Sprintf("Judged at one rate: every column in an open loop at %.0f/s (%s) from the same %d connections, %d runs of %s each; "+
		"the CPU table of each column's closed-loop run (%s, as fast as it can, once) follows it, and gives the throughput figures, not judged. "+
		"A column more than %.0f %% short of the offered rate in a run is named below and its ratios are not judged.",
		a.rate, a.why(), o.Conns, o.Reps, o.Dur, o.Calib, RateTolerance*100)
}

// capacity is a column's closed-loop rate (NaN when it did not run).
func (a *atRate) capacity(col string) float64 {
	r, ok := a.closed[col]
	if !ok {
		return math.NaN()
	}
	return r.Rate()
}

// closedMedian is a cell of the closed-loop CPU table.
func (a *atRate) closedMedian(row, col string) float64 { return a.closedCPU.Median(row, col) }

// judged is JudgedOnly of each target over cols.
func (a *atRate) judged(ts []Target, cols ...string) []Target {
	out := make([]Target, len(ts))
	for i, t := range ts {
		out[i] = JudgedOnly(t, a.rate, a.short, cols...)
	}
	return out
}

// figures are the offered rate, each column's closed-loop rate and what
// it achieved at the offered rate, and the latency at the offered rate of
// the columns named.
func (a *atRate) figures(unit string, latency ...string) []Figure {
	out := []Figure{{"offered rate, every column (judged runs)", unit, []float64{a.rate}}}
	names := sortedSystems(a.runs)
	for _, name := range names {
		out = append(out, Figure{name + ", closed loop (capacity)", unit, []float64{a.closed[name].Rate()}})
	}
	for _, name := range names {
		out = append(out, Figure{name + ", achieved at the offered rate", unit, rates(a.runs[name])})
	}
	for _, name := range latency {
		if rs, ok := a.runs[name]; ok {
			out = append(out, Figure{name + " p50 at the offered rate", "ms", p50s(rs)}, Figure{name + " p99 at the offered rate", "ms", p99s(rs)})
		}
	}
	return out
}

// tableTitles names a scenario's two CPU tables: the judged one first
// (the one kvbench -plan reads), then the closed loop.
func (a *atRate) tableTitles(op string, o Options, table, closed *CPUTable) {
	table.Title = fmt.Sprintf("%s, open loop at %.0f/s, %d connections (judged)", op, a.rate, o.Conns)
	closed.Title = fmt.Sprintf("%s, closed loop of %d connections, each column as fast as it can (not judged)", op, o.Conns)
}

// closedRatio is a throughput ratio of two columns' closed-loop rates, a
// figure without a target.
func (a *atRate) closedRatio(name, col, of string) Target {
	return Reported(strings.TrimSpace(name)+" (closed loop)", Ratio(a.capacity(col), a.capacity(of)), fmtTimes)
}
