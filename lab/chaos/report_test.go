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
