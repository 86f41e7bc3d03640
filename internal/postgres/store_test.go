package postgres_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/postgres/pgtest"
)

func TestGet(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, put("live", "v1", ver(1, 1)), del("gone", ver(2, 2)), put("empty", "", ver(3, 3)))

	tests := []struct {
		name    string
		key     string
		want    kv.Entry
		wantErr error
	}{
		{"live", "live", kv.Entry{Key: "live", Value: "v1", Version: ver(1, 1)}, nil},
		{"empty value is a value", "empty", kv.Entry{Key: "empty", Value: "", Version: ver(3, 3)}, nil},
		{"tombstone", "gone", kv.Entry{Key: "gone", Version: ver(2, 2), Deleted: true}, nil},
		{"absent", "absent", kv.Entry{}, kv.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Get(t.Context(), tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get(%q) error: got %v, want %v", tt.key, err, tt.wantErr)
			}
			if !sameEntry(got, tt.want) {
				t.Errorf("Get(%q): got %+v, want %+v", tt.key, got, tt.want)
			}
			if got.Version.Time.Location() != tt.want.Version.Time.Location() {
				t.Errorf("Get(%q) time zone: got %v, want UTC", tt.key, got.Version.Time.Location())
			}
		})
	}
}

func TestListPagesInByteOrderWithoutTombstones(t *testing.T) {
	s := newStore(t)
	live := []string{"a", "B", "b", "Z", "a b", "a\u00a0", "ä", "é", "z", "~", "0", "😀", "\u2603", "a/b", "a.b"}
	dead := []string{"a!", "c", "\u00ff", "zz"}
	var ops []kv.Op
	for i, k := range live {
		ops = append(ops, put(k, "v-"+k, ver(int64(i), 1)))
	}
	for i, k := range dead {
		ops = append(ops, del(k, ver(int64(i), 2)))
	}
	mustApply(t, s, ops...)
	// A key deleted after it was written is excluded too.
	mustApply(t, s, put("deleted-later", "x", ver(1, 1)))
	mustApply(t, s, del("deleted-later", ver(2, 1)))

	want := slices.Clone(live)
	slices.Sort(want) // Go compares strings bytewise: the order of COLLATE "C"

	for _, limit := range []int{1, 3, 4, len(live), 100} {
		var got []string
		after := ""
		for page := 0; ; page++ {
			if page > len(live)+1 {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			entries, err := s.List(t.Context(), "", after, limit)
			if err != nil {
				t.Fatalf("List(%q, %d): %v", after, limit, err)
			}
			if len(entries) > limit {
				t.Fatalf("List(%q, %d): got %d entries", after, limit, len(entries))
			}
			for _, e := range entries {
				if e.Deleted || e.Value != "v-"+e.Key {
					t.Errorf("List entry %q: got value %q deleted %v, want value %q live", e.Key, e.Value, e.Deleted, "v-"+e.Key)
				}
				got = append(got, e.Key)
			}
			if len(entries) < limit {
				break
			}
			after = entries[len(entries)-1].Key
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: got keys %q, want %q", limit, got, want)
		}
	}
}

func TestListRejectsNonPositiveLimit(t *testing.T) {
	s := newStore(t)
	for _, limit := range []int{0, -1} {
		if _, err := s.List(t.Context(), "", "", limit); !errors.Is(err, kv.ErrInvalid) {
			t.Errorf("List limit %d: got %v, want kv.ErrInvalid", limit, err)
		}
	}
}

func TestPing(t *testing.T) {
	s := newStore(t)
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: got %v, want nil", err)
	}
}

// Now is PostgreSQL's clock, which on this machine is the test's own.
func TestNow(t *testing.T) {
	s := newStore(t)
	before := time.Now()
	now, err := s.Now(t.Context())
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	if now.Before(before.Add(-time.Second)) || now.After(time.Now().Add(time.Second)) {
		t.Errorf("Now = %s, want about %s", now, before)
	}
}

// The migrations make one random token key per database (here, schema):
// the same for every reader, another for another deployment.
func TestTokenKey(t *testing.T) {
	url := pgtest.MustURL(t)
	a, err1 := postgres.NewStore(pgtest.MustPoolAt(t, url)).TokenKey(t.Context())
	b, err2 := postgres.NewStore(pgtest.MustPoolAt(t, url)).TokenKey(t.Context())
	other, err3 := newStore(t).TokenKey(t.Context())
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatalf("TokenKey: %v", err)
	}
	if len(a) != 64 || strings.Trim(string(a), "0123456789abcdef") != "" {
		t.Errorf("token key %q: want 64 hex digits", a)
	}
	if string(a) != string(b) {
		t.Error("two readers of one database got different keys")
	}
	if string(a) == string(other) {
		t.Error("two databases got the same key")
	}
}

// A listing under a prefix shows the prefix's keys and no other, from
// wherever its after starts, before, inside or past the prefix's range.
func TestListUnderPrefix(t *testing.T) {
	s := newStore(t)
	keys := []string{"team", "team-", "team-a", "team-a/", "team-a/x", "team-a/y", "team-a0", "team-b/x", "teal", "u"}
	var ops []kv.Op
	for i, k := range keys {
		ops = append(ops, put(k, "v", ver(int64(i), 1)))
	}
	mustApply(t, s, ops...)
	for _, tc := range []struct {
		prefix, after string
		want          []string
	}{
		{"team-a/", "", []string{"team-a/", "team-a/x", "team-a/y"}},
		{"team-a/", "team-a/", []string{"team-a/x", "team-a/y"}},
		{"team-a/", "team-a/x", []string{"team-a/y"}},
		{"team-a/", "team-a/y", nil},
		{"team-a/", "team-b", nil},
		{"team-a/", "\u00ff", nil},
		{"team-a", "", []string{"team-a", "team-a/", "team-a/x", "team-a/y", "team-a0"}},
		{"", "team-b", []string{"team-b/x", "u"}},
	} {
		entries, err := s.List(t.Context(), tc.prefix, tc.after, 100)
		if err != nil {
			t.Fatalf("List(%q, %q): %v", tc.prefix, tc.after, err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Key)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("List(%q, after %q) = %q, want %q", tc.prefix, tc.after, got, tc.want)
		}
	}
}
