package postgres_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
)

func TestPurgeTombstonesRemovesOnlyOldTombstones(t *testing.T) {
	s := newStore(t)
	old := func(id byte) kv.Version { return ver(0, id) }
	recent := func(id byte) kv.Version { return kv.Version{Time: base.Add(2 * time.Hour), OpID: ver(0, id).OpID} }
	mustApply(t, s,
		del("old-tombstone", old(1)),
		del("recent-tombstone", recent(1)),
		put("old-live", "v", old(1)),
		put("recent-live", "v", recent(1)),
	)

	n, err := s.PurgeTombstones(t.Context(), base.Add(time.Hour))
	if err != nil {
		t.Fatalf("PurgeTombstones: %v", err)
	}
	if n != 1 {
		t.Errorf("purged: got %d, want 1", n)
	}
	tests := []struct {
		key      string
		wantGone bool
	}{
		{"old-tombstone", true},
		{"recent-tombstone", false},
		{"old-live", false},
		{"recent-live", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			_, err := s.Get(t.Context(), tt.key)
			if gone := errors.Is(err, kv.ErrNotFound); gone != tt.wantGone {
				t.Errorf("Get(%q) after purge: got error %v, want gone=%v", tt.key, err, tt.wantGone)
			}
		})
	}
}

// TestPurgeTombstonesInChunks deletes more tombstones than one statement
// takes, so the loop must run several chunks and count them all.
func TestPurgeTombstonesInChunks(t *testing.T) {
	s := newStore(t)
	const n = 2500
	ops := make([]kv.Op, n)
	for i := range ops {
		ops[i] = del(fmt.Sprintf("t%05d", i), ver(int64(i), 1))
	}
	mustApply(t, s, ops...)

	got, err := s.PurgeTombstones(t.Context(), base.Add(time.Hour))
	if err != nil {
		t.Fatalf("PurgeTombstones: %v", err)
	}
	if got != n {
		t.Errorf("purged: got %d, want %d", got, n)
	}
	again, err := s.PurgeTombstones(t.Context(), base.Add(time.Hour))
	if err != nil || again != 0 {
		t.Errorf("second purge: got %d, %v; want 0, nil", again, err)
	}
}
