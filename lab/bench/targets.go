package bench

import (
	"fmt"
	"math"
	"strings"
)

// The figures that decide "met" or "not met" are computed here, by
// functions the tests check, from medians the scenarios collected.

// Ratio is a ÷ b; NaN when either is unknown or b is not positive.
func Ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 {
		return math.NaN()
	}
	return a / b
}

// TracingShare is the share of a process's CPU per operation that tracing
// takes: what it spends with tracing (traced) less what the same binary
// spends with tracing off (untraced), over the traced figure. A negative
// difference (tracing off measured slower, within the spread) is 0.
func TracingShare(traced, untraced float64) float64 {
	r := Ratio(traced-untraced, traced)
	if r < 0 {
		return 0
	}
	return r
}

// AtMost is a target met when got ≤ limit, shown with format (one verb).
func AtMost(name string, got, limit float64, format string) Target {
	return Target{Name: name, Got: fmtGot(format, got), Want: "≤ " + fmt.Sprintf(format, limit), Met: !math.IsNaN(got) && got <= limit}
}

// AtMostRuns is a target on a ratio of CPU per operation, a's median ÷
// b's, met when it is ≤ limit; beside it, the run-to-run spread: the
// lowest and highest of the ratios of the runs taken in the same turn
// (a[i] ÷ b[i]).
func AtMostRuns(name string, a, b []float64, limit float64, format string) Target {
	got := math.NaN()
	if len(a) > 0 && len(b) > 0 {
		got = Ratio(Summarise(a).Median, Summarise(b).Median)
	}
	t := AtMost(name, got, limit, format)
	if lo, hi, ok := RatioSpread(a, b); ok {
		t.Got += fmt.Sprintf(" ["+format+" – "+format+"]", lo, hi)
		t.Got = strings.ReplaceAll(t.Got, " × –", " –")
	}
	return t
}

// RatioSpread is the lowest and highest of a[i] ÷ b[i] over the runs both
// have; ok is false when they have none in common.
func RatioSpread(a, b []float64) (lo, hi float64, ok bool) {
	for i := range min(len(a), len(b)) {
		r := Ratio(a[i], b[i])
		if math.IsNaN(r) {
			continue
		}
		if !ok || r < lo {
			lo = r
		}
		if !ok || r > hi {
			hi = r
		}
		ok = true
	}
	return lo, hi, ok
}

// Below is a target met when got < limit.
func Below(name string, got, limit float64, format string) Target {
	return Target{Name: name, Got: fmtGot(format, got), Want: "< " + fmt.Sprintf(format, limit), Met: !math.IsNaN(got) && got < limit}
}

// AtLeast is a target met when got ≥ limit.
func AtLeast(name string, got, limit float64, format string) Target {
	return Target{Name: name, Got: fmtGot(format, got), Want: "≥ " + fmt.Sprintf(format, limit), Met: !math.IsNaN(got) && got >= limit}
}

// Reported is a figure shown beside the targets, with none of its own.
func Reported(name string, got float64, format string) Target {
	return Target{Name: name, Got: fmtGot(format, got)}
}

// LayerCost is a target on what a layer costs a process per operation:
// its CPU with the layer (on) over without (off), less one, in per cent,
// met when ≤ limit; beside it, the spread of the same figure run by run
// (on[i] ÷ off[i], taken in the same turn).
func LayerCost(name string, on, off []float64, limit float64) Target {
	got := math.NaN()
	if len(on) > 0 && len(off) > 0 {
		got = percent(Ratio(Summarise(on).Median, Summarise(off).Median) - 1)
	}
	t := AtMost(name, got, limit, fmtPercent)
	if lo, hi, ok := RatioSpread(on, off); ok {
		t.Got += fmt.Sprintf(" [%.1f – %.1f %%]", percent(lo-1), percent(hi-1))
	}
	return t
}

// LoadAdjusted is a layer's cost run by run with the machine's load taken
// out: each run's on[i] ÷ off[i] over the same ratio of a process the
// layer does not touch (nginx's, say) in the same turn, less one, in per
// cent; the median of the runs. On 7 December the PUT's "auth off" column
// ran on a quieter machine: the replicas' ratio per run was 0.94, 1.15,
// 1.35 and nginx's 0.89, 1.18, 1.34.
func LoadAdjusted(on, off, refOn, refOff []float64) float64 {
	var rs []float64
	for i := range min(len(on), len(off), len(refOn), len(refOff)) {
		r := Ratio(Ratio(on[i], off[i]), Ratio(refOn[i], refOff[i]))
		if !math.IsNaN(r) {
			rs = append(rs, percent(r-1))
		}
	}
	if len(rs) == 0 {
		return math.NaN()
	}
	return Summarise(rs).Median
}

// authCost is auth's cost on the replicas in the scenario op (both run by
// the harness), with its spread, and the same with the machine's load
// taken out by nginx's row.
func authCost(op, what string, t *CPUTable) []Target {
	on, off := t.Runs(rowReplicas, colHarness), t.Runs(rowReplicas, colAuthOff)
	return []Target{
		LayerCost(op+": auth's cost, the replicas' CPU per request with auth on over auth off ("+what+"both run by the harness)", on, off, 5),
		Reported(op+": auth's cost as above, each run's over nginx's ratio in the same turn (nginx does no auth: what is left is auth's, not the machine's)",
			LoadAdjusted(on, off, t.Runs("nginx", colHarness), t.Runs("nginx", colAuthOff)), fmtPercent),
	}
}

// EdgeTLSCost is what TLS at the edge costs per request (issue 19), in
// the scenario op: nginx's CPU per request, and every process's, as
// shipped (run by the harness) less with the edge's TLS off, both run the
// same way, in µs and as a share of nginx's figure without TLS.
func EdgeTLSCost(op string, t *CPUTable) []Target {
	withTLS, without := t.Median("nginx", colHarness), t.Median("nginx", colTLSOff)
	return []Target{
		Reported(op+": TLS's cost at the edge, nginx's CPU per request with TLS less without (both run by the harness)", withTLS-without, "%.1f µs"),
		Reported(op+": TLS's cost at the edge, nginx's CPU per request with TLS over without", percent(Ratio(withTLS, without)-1), fmtPercent),
		Reported(op+": TLS's cost at the edge, every process's CPU per request with TLS less without", t.Median(rowTotal, colHarness)-t.Median(rowTotal, colTLSOff), "%.1f µs"),
	}
}

func fmtGot(format string, v float64) string {
	if math.IsNaN(v) {
		return "not measured"
	}
	return fmt.Sprintf(format, v)
}

const (
	fmtTimes   = "%.2f ×"
	fmtPercent = "%.1f %%"
)

// percent is a share as a percentage.
func percent(share float64) float64 { return share * 100 }
