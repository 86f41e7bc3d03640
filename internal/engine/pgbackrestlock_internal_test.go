package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// pgBackRest's lock file names its holder: "PID\nEXEC-ID\n" (2.45, the
// Debian package), JSON in later releases.
func TestLockFilePID(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		content string
		want    int
	}{
		{"4242\n4242-0a1b2c3d\n", 4242},
		{"4242\n", 4242},
		{`{"execId":"4242-0a1b2c3d","pid":4242}`, 4242},
		{"", 0},
		{"garbage", 0},
	} {
		path := filepath.Join(dir, "kvstack-backup.lock")
		if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := lockFilePID(path); got != c.want {
			t.Errorf("lockFilePID(%q) = %d, want %d", c.content, got, c.want)
		}
	}
	if got := lockFilePID(filepath.Join(dir, "none.lock")); got != 0 {
		t.Errorf("lockFilePID of a missing file = %d, want 0", got)
	}
}
