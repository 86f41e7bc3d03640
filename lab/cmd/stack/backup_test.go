package main

import (
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	want := time.Date(2026, 12, 6, 14, 30, 0, 500_000_000, time.UTC)
	for _, in := range []string{"2026-12-06T14:30:00.5Z", "2026-12-06T15:30:00.5+01:00", "2026-12-06 14:30:00.5", "2026-12-06 14:30:00.5+00:00"} {
		got, err := ParseTarget(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTarget(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "14:30", "2026-12-06"} {
		if got, err := ParseTarget(in); err == nil {
			t.Errorf("ParseTarget(%q) = %v, want an error", in, got)
		}
	}
}
