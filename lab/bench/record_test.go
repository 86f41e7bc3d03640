package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	hit := NewCPUTable("GET hit, closed loop of 64 connections", "request", cpuRowsHTTP...)
	for _, v := range []float64{1, 1.4, 1.2} {
		hit.Add(colKVStack, map[string]float64{"nginx": 36 * v, "mtail": 15.5, "api1": 40 * v, "api2": 41, "redis": 10.8, "jaeger": 2})
		hit.Add(colReference, map[string]float64{"nginx": 21.2, "api1": 18, "api2": 18.1 * v, "redis": 10.3})
	}
	apply := NewCPUTable("apply", "message", cpuRowsApply...)
	apply.Add(colKVStack, map[string]float64{"consumer": 33.9, "redis": 6.6, "rabbitmq": 132, "postgres": 9.7})
	return &Report{
		Started: time.Date(2026, 12, 6, 20, 30, 0, 123, time.UTC), Took: time.Minute, Command: "kvbench", Baselines: true,
		Settings: [][2]string{{"values", "100 bytes"}},
		Sections: []*Section{
			{ID: "hit", Title: titleHit, Setup: "64 connections", CPU: []*CPUTable{hit},
				Figures: []Figure{{"kvstack", "req/s", []float64{7610, 5136, 8142}}},
				Targets: []Target{{Name: "GET hit", Got: "1.2 ×", Want: "≤ 1.5 ×", Met: true}}},
			{ID: "apply", Title: titleApply, CPU: []*CPUTable{apply}},
		},
	}
}

// The JSON beside a report holds every run of every cell.
func TestReportJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	r := sampleReport()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	got := &Report{}
	if err := json.Unmarshal(b.Bytes(), got); err != nil {
		t.Fatal(err)
	}
	if !got.Started.Equal(r.Started) || got.Section("hit") == nil || got.Section("apply") == nil {
		t.Fatalf("read back: %+v", got)
	}
	for _, id := range []string{"hit", "apply"} {
		w, g := r.Section(id).CPU[0], got.Section(id).CPU[0]
		if !slices.Equal(w.Rows, g.Rows) || !slices.Equal(w.Columns, g.Columns) {
			t.Errorf("%s: rows %q columns %q, want %q %q", id, g.Rows, g.Columns, w.Rows, w.Columns)
		}
		for _, row := range w.Rows {
			for _, c := range w.Columns {
				if !slices.Equal(w.Runs(row, c), g.Runs(row, c)) {
					t.Errorf("%s %s %s: %v, want %v", id, row, c, g.Runs(row, c), w.Runs(row, c))
				}
			}
		}
	}
	if got.Section("hit").Targets[0] != r.Section("hit").Targets[0] {
		t.Errorf("target %+v", got.Section("hit").Targets[0])
	}
}

// A report read back from its Markdown has its sections' ids and every
// CPU cell's median, min and max as written.
func TestParseMarkdownReadsWhatWriteWrote(t *testing.T) {
	var b bytes.Buffer
	r := sampleReport()
	r.Write(&b)
	got, err := ParseMarkdown(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Started.Equal(r.Started.Truncate(time.Second)) {
		t.Errorf("started %v, want %v", got.Started, r.Started)
	}
	for _, id := range []string{"hit", "apply"} {
		w, sec := r.Section(id).CPU[0], got.Section(id)
		if sec == nil || len(sec.CPU) != 1 {
			t.Fatalf("section %s: %+v", id, sec)
		}
		g := sec.CPU[0]
		if g.Title != w.Title || g.Op != w.Op || !slices.Equal(g.Rows, w.Rows) || !slices.Equal(g.Columns, w.Columns) {
			t.Errorf("%s: %q per %q rows %q columns %q", id, g.Title, g.Op, g.Rows, g.Columns)
		}
		for _, row := range w.Rows {
			for _, c := range w.Columns {
				want, have := w.Runs(row, c), g.Runs(row, c)
				if len(want) == 0 {
					if len(have) != 0 {
						t.Errorf("%s %s %s: %v, want none", id, row, c, have)
					}
					continue
				}
				ws, hs := Summarise(want), Summarise(have)
				for _, pair := range [][2]float64{{ws.Median, hs.Median}, {ws.Min, hs.Min}, {ws.Max, hs.Max}} {
					if fmtMicros(pair[0]) != fmtMicros(pair[1]) {
						t.Errorf("%s %s %s: %v, want %v", id, row, c, hs, ws)
					}
				}
			}
		}
	}
}

// ReadReport prefers the JSON of the same run, refuses one of another
// run, and reads the Markdown when there is no JSON.
func TestReadReport(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "REPORT.md")
	if _, _, err := ReadReport(md); !errors.Is(err, ErrNoReport) {
		t.Errorf("no report: %v", err)
	}
	r := sampleReport()
	var b bytes.Buffer
	r.Write(&b)
	must(t, os.WriteFile(md, b.Bytes(), 0o644))
	if _, fromJSON, err := ReadReport(md); err != nil || fromJSON {
		t.Errorf("the Markdown alone: from JSON %v, %v", fromJSON, err)
	}
	b.Reset()
	must(t, r.WriteJSON(&b))
	must(t, os.WriteFile(JSONPath(md), b.Bytes(), 0o644))
	got, fromJSON, err := ReadReport(md)
	if err != nil || !fromJSON || len(got.Section("hit").CPU[0].Runs("nginx", colKVStack)) != 3 {
		t.Errorf("with the JSON: from JSON %v, %v", fromJSON, err)
	}
	r.Started = r.Started.Add(time.Hour)
	b.Reset()
	must(t, r.WriteJSON(&b))
	must(t, os.WriteFile(JSONPath(md), b.Bytes(), 0o644))
	if _, _, err := ReadReport(md); err == nil || !strings.Contains(err.Error(), "same run") {
		t.Errorf("a JSON of another run: %v", err)
	}
}

// The committed reports parse, and the plan finds what it needs in them.
func TestCommittedReportsHaveThePlansFigures(t *testing.T) {
	rep, _, err := ReadReport("REPORT.md")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RowCosts(rep, map[string]string{opHit: colKVStack, opMiss: colKVStack, opPut: colKVStack, opApply: colKVStack}); err != nil {
		t.Error(err)
	}
	ha, _, err := ReadReport("SCALEOUT.md")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RowCosts(ha, map[string]string{opHit: "2 replicas", opApply: "1 consumer"}); err != nil {
		t.Error(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
