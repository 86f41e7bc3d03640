package native

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The stack's directory, made 0700 for its message key, lets the
// processes' and the engines' users through to their own files, and still
// lists nothing. Under a closed directory the stack refuses to start,
// naming the directory, rather than run its processes as root; with
// KV_PROCESS_USER=root it runs them as root and says so.
func TestReachable(t *testing.T) {
	base, err := os.MkdirTemp("", "kvstack-reachable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// A stack directory whose parents do not exist yet (make
	// check-observability's tmp/check-observability/prod): the parents
	// made are open to pass through.
	dir := filepath.Join(base, "tmp", "nested", ".stack")
	s, err := Load("../..", []string{"KV_STACK_DIR=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		var log strings.Builder
		if err := reachable(s, &log); err != nil {
			t.Fatal(err)
		}
		if log.Len() != 0 {
			t.Errorf("a warning under an open directory: %s", log.String())
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
	for _, parent := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		if fi, err := os.Stat(parent); err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Errorf("%s made closed to others (%v, %v)", parent, fi.Mode().Perm(), err)
		}
	}
	if got, want := s.ProcessUser(), s.Get("KV_PROCESS_USER"); got != want || want == "root" {
		t.Errorf("ProcessUser %q under an open directory, want %q (not root)", got, want)
	}
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(base, 0o755)
	var log strings.Builder
	err = reachable(s, &log)
	if err == nil || !strings.Contains(err.Error(), base+" is closed") || !strings.Contains(err.Error(), "KV_PROCESS_USER=root") {
		t.Errorf("a closed %s above the stack's directory: %v, want a refusal naming it and the opt-in", base, err)
	}
	if log.Len() != 0 {
		t.Errorf("log %q, want nothing but the refusal", log.String())
	}
	if got, want := s.ProcessUser(), s.Get("KV_PROCESS_USER"); got != want {
		t.Errorf("ProcessUser %q under a closed directory, want %q: never root unless said", got, want)
	}
	root, err := Load("../..", []string{"KV_STACK_DIR=" + dir, "KV_PROCESS_USER=root"})
	if err != nil {
		t.Fatal(err)
	}
	log.Reset()
	if err := reachable(root, &log); err != nil {
		t.Errorf("KV_PROCESS_USER=root: %v", err)
	}
	if !strings.Contains(log.String(), "WARNING: KV_PROCESS_USER=root") || !strings.Contains(log.String(), "run as ROOT") {
		t.Errorf("KV_PROCESS_USER=root: log %q, want it said", log.String())
	}
	if got := root.ProcessUser(); got != "" {
		t.Errorf("ProcessUser %q with KV_PROCESS_USER=root, want root (\"\")", got)
	}
}
