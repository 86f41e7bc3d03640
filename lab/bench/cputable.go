package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Rows of the CPU tables: the processes measured, and two derived rows.
const (
	// rowReplicas is api1 + api2, each run's sum: what the targets compare
	// (a reference's two stub processes stand for the two replicas).
	rowReplicas = "api1 + api2"
	rowTotal    = "total"
)

// cpuRowsHTTP are the processes of a scenario driven through nginx.
var cpuRowsHTTP = []string{"nginx", "mtail", "api1", "api2", rowReplicas, "consumer", "redis", "rabbitmq", "postgres", "jaeger"}

// cpuRowsApply are the processes of a drain of the queue.
var cpuRowsApply = []string{"consumer", "redis", "rabbitmq", "postgres", "jaeger"}

// CPUTable is CPU time per operation (µs), one row a process, one column
// a system measured in the same run (kvstack as shipped, its variants, the
// references), each cell over the repetitions.
type CPUTable struct {
	Title   string
	Op      string   // "request", "message"
	Rows    []string // processes and derived rows, in order; the total is last
	Columns []string // in the order they were first added
	runs    map[[2]string][]float64
}

// NewCPUTable makes an empty table of the rows (rowTotal is added).
func NewCPUTable(title, op string, rows ...string) *CPUTable {
	return &CPUTable{Title: title, Op: op, Rows: append(slices.Clone(rows), rowTotal), runs: map[[2]string][]float64{}}
}

// Add records one run of column: the CPU µs per operation of each process
// measured (processes absent from perOp are not part of that system, or
// were stopped). The derived rows are each run's sums: rowReplicas of api1
// and api2 when both were measured, rowTotal of every process.
func (t *CPUTable) Add(column string, perOp map[string]float64) {
	if !slices.Contains(t.Columns, column) {
		t.Columns = append(t.Columns, column)
	}
	var total float64
	for role, v := range perOp {
		if role == rowReplicas || role == rowTotal {
			continue
		}
		t.add(role, column, v)
		total += v
	}
	a1, ok1 := perOp["api1"]
	a2, ok2 := perOp["api2"]
	if ok1 && ok2 {
		t.add(rowReplicas, column, a1+a2)
	}
	t.add(rowTotal, column, total)
}

func (t *CPUTable) add(row, column string, v float64) {
	k := [2]string{row, column}
	t.runs[k] = append(t.runs[k], v)
}

// Runs are the figures of one cell, in run order.
func (t *CPUTable) Runs(row, column string) []float64 { return t.runs[[2]string{row, column}] }

// Median of one cell; NaN when it has no run.
func (t *CPUTable) Median(row, column string) float64 {
	r := t.Runs(row, column)
	if len(r) == 0 {
		return math.NaN()
	}
	return Summarise(r).Median
}

// Write renders the table in Markdown: median [min – max] per cell.
func (t *CPUTable) Write(w io.Writer) {
	reps := 0
	for _, r := range t.runs {
		reps = max(reps, len(r))
	}
	fmt.Fprintf(w, "**%s**: CPU µs per %s, median [min – max] of %d runs\n\n", t.Title, t.Op, reps)
	fmt.Fprintf(w, "| process | %s |\n|---|%s\n", strings.Join(t.Columns, " | "), strings.Repeat("---|", len(t.Columns)))
	for _, row := range t.Rows {
		cells := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			cells[i] = fmtCell(t.Runs(row, c))
		}
		name := row
		if row == rowTotal || row == rowReplicas {
			name = "**" + row + "**"
		}
		fmt.Fprintf(w, "| %s | %s |\n", name, strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
}

func fmtCell(runs []float64) string {
	if len(runs) == 0 {
		return "–"
	}
	s := Summarise(runs)
	if len(runs) == 1 {
		return fmtMicros(s.Median)
	}
	return fmt.Sprintf("%s [%s – %s]", fmtMicros(s.Median), fmtMicros(s.Min), fmtMicros(s.Max))
}

func fmtMicros(v float64) string {
	if math.Abs(v) >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
