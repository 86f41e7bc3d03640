package engines

import (
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
)

// The scheduler takes a full backup when there is none or the newest full
// is too old, a differential one when the newest backup of any kind is too
// old, and nothing otherwise.
func TestBackupDue(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	info := func(backups ...engine.BackupInfo) engine.RepoInfo {
		return engine.RepoInfo{Status: "ok", Backups: backups}
	}
	full := func(end time.Time) engine.BackupInfo { return engine.BackupInfo{Type: "full", Stop: end} }
	diff := func(end time.Time) engine.BackupInfo { return engine.BackupInfo{Type: "diff", Stop: end} }
	for _, c := range []struct {
		name string
		info engine.RepoInfo
		want string
	}{
		{"an empty repository", info(), "full"},
		{"only a differential backup", info(diff(ago(time.Minute))), "full"},
		{"a full backup a day old", info(full(ago(24 * time.Hour))), "full"},
		{"a full backup 2h old", info(full(ago(2 * time.Hour))), "diff"},
		{"a full backup 3h old, a diff 10m old", info(full(ago(3*time.Hour)), diff(ago(10*time.Minute))), ""},
		{"a full backup 30m old", info(full(ago(30 * time.Minute))), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Due(c.info, now, time.Hour, 24*time.Hour); got != c.want {
				t.Errorf("Due = %q, want %q", got, c.want)
			}
		})
	}
}
