package history

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Result is what a check looked at and concluded.
type Result struct {
	Model string
	// Ops: the operations checked; Unknown: those among them whose end
	// is unknown (linearized anywhere after their call, or never).
	Ops, Unknown, Keys int
	// Verdict is porcupine's: Ok, Illegal, or Unknown (it ran out of
	// time).
	Verdict porcupine.CheckResult
	// Visualization: the HTML file of an illegal history ("" otherwise).
	Visualization string
}

// Undecided: porcupine found no anomaly within its time, nor proved there
// is none.
func (r Result) Undecided() bool { return r.Verdict == porcupine.Unknown }

func (r Result) String() string {
	return fmt.Sprintf("%s: %s, %d operations (%d with an unknown end) on %d keys", r.Model, r.Verdict, r.Ops, r.Unknown, r.Keys)
}

// CheckTimeout bounds porcupine's search. Its verdict is then Unknown: no
// anomaly found in the time, not an error (porcupine's documentation reads
// it so); Result.Undecided tells it, for the caller to report.
const CheckTimeout = 20 * time.Second

// check runs porcupine on ops and, when the history is illegal, writes its
// visualisation into dir (made when missing). The error names the file.
func check(model porcupine.Model, name string, ops []porcupine.Operation, unknown int, dir string) (Result, error) {
	res := Result{Model: name, Ops: len(ops), Unknown: unknown, Keys: len(model.Partition(ops))}
	var info porcupine.LinearizationInfo
	res.Verdict, info = porcupine.CheckOperationsVerbose(model, ops, CheckTimeout)
	switch res.Verdict {
	case porcupine.Ok:
		return res, nil
	case porcupine.Unknown:
		return res, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, fmt.Errorf("%s: history is illegal; its visualisation: %w", name, err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.html", name, time.Now().UTC().Format("20060102T150405.000000000")))
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		return res, fmt.Errorf("%s: history is illegal; its visualisation: %w", name, err)
	}
	res.Visualization = path
	return res, fmt.Errorf("%s: history of %d operations is illegal: see %s", name, len(ops), path)
}

// clock turns times into porcupine's integers: nanoseconds since origin.
type clock struct{ origin time.Time }

func newClock(ops []Op) clock {
	c := clock{}
	for _, o := range ops {
		if c.origin.IsZero() || o.Call.Before(c.origin) {
			c.origin = o.Call
		}
	}
	return c
}

func (c clock) at(t time.Time) int64 { return int64(t.Sub(c.origin)) }

// never is the return time of an operation whose end is unknown.
const never = math.MaxInt64

// byKey partitions a history by the key its operations name.
func byKey(ops []porcupine.Operation) [][]porcupine.Operation {
	return partition(ops, func(o Op) string { return o.Key })
}

// partition splits a history into the parts whose operations share
// part(op), each in the history's order, the parts in order of first
// appearance.
func partition[K comparable](ops []porcupine.Operation, part func(Op) K) [][]porcupine.Operation {
	parts := map[K][]porcupine.Operation{}
	var order []K
	for _, o := range ops {
		k := part(o.Metadata.(Op))
		if _, ok := parts[k]; !ok {
			order = append(order, k)
		}
		parts[k] = append(parts[k], o)
	}
	out := make([][]porcupine.Operation, 0, len(order))
	for _, k := range order {
		out = append(out, parts[k])
	}
	return out
}

func describeMetadata(m any) string { return m.(Op).String() }

func quote(found bool, value string) string {
	if !found {
		return "absent"
	}
	return fmt.Sprintf("%q", value)
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimSpace(s[:n]) + "…"
}
