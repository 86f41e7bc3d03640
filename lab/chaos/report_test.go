package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Each campaign rewrites its own part of the report and keeps the other's.
func TestWriteReportKeepsTheOtherCampaignsPart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RELIABILITY.md")
	single := func(fault string) report {
		return report{s: settings{mode: "full"}, results: []result{{name: fault}}, started: time.Now()}
	}
	ha := func(fault string) report {
		return report{s: settings{mode: "ha"}, results: []result{{name: fault}}, started: time.Now()}
	}
	steps := []struct {
		rep        report
		want, gone []string
	}{
		{single("single-a"), []string{"single-a"}, []string{haMarker}},
		{ha("ha-a"), []string{"single-a", haMarker, "ha-a"}, nil},
		{single("single-b"), []string{"single-b", haMarker, "ha-a"}, []string{"single-a"}},
		{ha("ha-b"), []string{"single-b", haMarker, "ha-b"}, []string{"ha-a"}},
	}
	for i, st := range steps {
		if err := st.rep.writeReport(path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, w := range st.want {
			if !strings.Contains(text, w) {
				t.Errorf("step %d: %q missing from\n%s", i, w, text)
			}
		}
		for _, g := range st.gone {
			if strings.Contains(text, "| "+g+" |") || (g == haMarker && strings.Contains(text, g)) {
				t.Errorf("step %d: %q still in\n%s", i, g, text)
			}
		}
		haAt := strings.Index(text, "## HA topology")
		if strings.Count(text, haMarker) > 1 || (haAt >= 0 && haAt < strings.Index(text, "the last full campaign")) {
			t.Errorf("step %d: sections out of order:\n%s", i, text)
		}
	}
}

// A report written by make chaos-ha alone starts with a title.
func TestWriteReportHAAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RELIABILITY.md")
	rep := report{s: settings{mode: "ha"}, results: []result{{name: "x"}}, started: time.Now()}
	if err := rep.writeReport(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "# Reliability\n") || !strings.Contains(string(b), "## HA topology") {
		t.Errorf("report:\n%s", b)
	}
}

// The DR drills' sections come last (the HA drill's after the single
// node's); the campaigns rewrite theirs and keep
// it, and the drill rewrites it and keeps theirs.
func TestDrillSectionKeptByTheCampaigns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RELIABILITY.md")
	single := report{s: settings{mode: "full"}, results: []result{{name: "single-a"}}, started: time.Now()}
	ha := report{s: settings{mode: "ha"}, results: []result{{name: "ha-a"}}, started: time.Now()}
	drill := func(accident string) drillReport {
		return drillReport{s: settings{mode: "dr"}, rounds: []drillRound{{accident: accident}}, started: time.Now()}
	}
	drillHA := func(accident string) drillReport {
		return drillReport{s: settings{mode: "dr-ha"}, rounds: []drillRound{{accident: accident}}, started: time.Now()}
	}
	steps := []struct {
		write func() error
		want  []string
	}{
		{func() error { return single.writeReport(path) }, []string{"single-a"}},
		{func() error { return drill("dr-a").write(path) }, []string{"single-a", drMarker, "| dr-a |"}},
		{func() error { return ha.writeReport(path) }, []string{"single-a", haMarker, "ha-a", drMarker, "| dr-a |"}},
		{func() error { return single.writeReport(path) }, []string{"single-a", haMarker, "ha-a", drMarker, "| dr-a |"}},
		{func() error { return drill("dr-b").write(path) }, []string{"single-a", haMarker, "ha-a", drMarker, "| dr-b |"}},
		{func() error { return drillHA("drha-a").write(path) }, []string{"single-a", haMarker, "ha-a", drMarker, "| dr-b |", drHAMarker, "| drha-a |"}},
		{func() error { return ha.writeReport(path) }, []string{"single-a", haMarker, "ha-a", drMarker, "| dr-b |", drHAMarker, "| drha-a |"}},
		{func() error { return drill("dr-c").write(path) }, []string{"single-a", haMarker, "ha-a", drMarker, "| dr-c |", drHAMarker, "| drha-a |"}},
		{func() error { return single.writeReport(path) }, []string{"single-a", haMarker, "ha-a", drMarker, "| dr-c |", drHAMarker, "| drha-a |"}},
		{func() error { return drillHA("drha-b").write(path) }, []string{"single-a", haMarker, "ha-a", drMarker, "| dr-c |", drHAMarker, "| drha-b |"}},
	}
	for i, st := range steps {
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		text := string(b)
		last := -1
		for _, w := range st.want {
			at := strings.Index(text, w)
			if at < 0 || at < last {
				t.Fatalf("step %d: %q missing or out of order in\n%s", i, w, text)
			}
			last = at
		}
		stale := map[int]string{4: "| dr-a |", 7: "| dr-b |", 9: "| drha-a |"}
		if strings.Count(text, drMarker) > 1 || strings.Count(text, haMarker) > 1 || strings.Count(text, drHAMarker) > 1 ||
			(stale[i] != "" && strings.Contains(text, stale[i])) || strings.Count(text, "# Reliability") != 1 {
			t.Fatalf("step %d: a section twice or left over:\n%s", i, text)
		}
	}
}
