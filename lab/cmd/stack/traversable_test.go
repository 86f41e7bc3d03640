package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The stack's directory, made 0700 for its message key, lets the engines'
// users through to their own directories, and still lists nothing.
func TestTraversable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".stack")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := traversable(dir); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o711 {
			t.Errorf("mode %o, want 711 (others pass through, list nothing)", got)
		}
	}
}
