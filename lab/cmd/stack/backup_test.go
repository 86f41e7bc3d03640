package main

import (
	"os"
	"path/filepath"
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

// A stack directory made 0700 (with the message key) becomes crossable by
// the engines' users, and no more than that.
func TestTraversable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stack")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := traversable(dir); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(dir)
	if got := info.Mode().Perm(); got != 0o711 {
		t.Errorf("mode %o, want 711", got)
	}
}
