package native

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The stack's directory, made 0700 for its message key, lets the
// processes' and the engines' users through to their own files, and still
// lists nothing. A closed directory above it is named.
func TestReachable(t *testing.T) {
	base, err := os.MkdirTemp("", "kvstack-reachable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, ".stack")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := Load("../..", []string{"KV_STACK_DIR=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := reachable(s); err != nil {
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
	if os.Geteuid() != 0 {
		return // the processes run as KV_PROCESS_USER only under root
	}
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(base, 0o755)
	if err := reachable(s); err == nil || !strings.Contains(err.Error(), base+" is closed") {
		t.Errorf("a closed %s above the stack's directory: %v, want it named", base, err)
	}
}
