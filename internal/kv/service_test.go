package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

type fakeStore struct {
	entries map[string]Entry
	calls   atomic.Int32
	release chan struct{} // when set, Get waits for it
}

func (s *fakeStore) Get(_ context.Context, key string) (Entry, error) {
	s.calls.Add(1)
	if s.release != nil {
		<-s.release
	}
	e, ok := s.entries[key]
	if !ok {
		return Entry{}, ErrNotFound
	}
	return e, nil
}

func (s *fakeStore) List(context.Context, string, string, int) ([]Entry, error) { return nil, nil }

type fakeCache struct {
	mu      sync.Mutex
	entries map[string]Entry
	down    bool
	gets    atomic.Int32
}

func (c *fakeCache) Get(_ context.Context, key string) (Entry, error) {
	c.gets.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return Entry{}, ErrUnavailable
	}
	e, ok := c.entries[key]
	if !ok {
		return Entry{}, ErrCacheMiss
	}
	return e, nil
}

func (c *fakeCache) Fill(_ context.Context, e Entry) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return false, ErrUnavailable
	}
	if cur, ok := c.entries[e.Key]; ok && !e.Version.Newer(cur.Version) {
		return false, nil
	}
	c.entries[e.Key] = e
	return true, nil
}

type fakePublisher struct {
	ops []Op
	err error
}

func (p *fakePublisher) Publish(_ context.Context, op Op) error {
	if p.err != nil {
		return p.err
	}
	p.ops = append(p.ops, op)
	return nil
}

func newTestService(store *fakeStore, cache *fakeCache, pub *fakePublisher) *Service {
	return NewService(store, cache, pub, Limits{MaxKeyBytes: 16, MaxValueBytes: 16}, zerolog.Nop())
}

func TestServiceGet(t *testing.T) {
	v1 := NewVersion(time.Now())
	live := Entry{Key: "k", Value: "v", Version: v1}
	tomb := Entry{Key: "k", Version: v1, Deleted: true}
	tests := []struct {
		name       string
		cached     map[string]Entry
		stored     map[string]Entry
		cacheDown  bool
		wantSource Source
		wantErr    error
		wantFilled bool
	}{
		{"hit", map[string]Entry{"k": live}, nil, false, SourceRedis, nil, false},
		{"cached tombstone", map[string]Entry{"k": tomb}, map[string]Entry{"k": live}, false, "", ErrNotFound, false},
		{"miss, then store, then fill", nil, map[string]Entry{"k": live}, false, SourcePostgres, nil, true},
		{"miss, stored tombstone is cached", nil, map[string]Entry{"k": tomb}, false, "", ErrNotFound, true},
		{"miss everywhere", nil, nil, false, "", ErrNotFound, false},
		{"cache down: served from the store", nil, map[string]Entry{"k": live}, true, SourcePostgres, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := &fakeCache{entries: map[string]Entry{}, down: tt.cacheDown}
			for k, e := range tt.cached {
				cache.entries[k] = e
			}
			svc := newTestService(&fakeStore{entries: tt.stored}, cache, &fakePublisher{})
			got, err := svc.Get(context.Background(), "k")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Get error = %v, want %v", err, tt.wantErr)
			}
			if got.Source != tt.wantSource {
				t.Errorf("source = %q, want %q", got.Source, tt.wantSource)
			}
			if err == nil && got.Entry.Value != "v" {
				t.Errorf("value = %q, want %q", got.Entry.Value, "v")
			}
			_, filled := cache.entries["k"]
			if tt.cached == nil && filled != tt.wantFilled {
				t.Errorf("cache filled = %v, want %v", filled, tt.wantFilled)
			}
		})
	}
}

func TestServiceGetRejectsBadKey(t *testing.T) {
	store := &fakeStore{}
	svc := newTestService(store, &fakeCache{entries: map[string]Entry{}}, &fakePublisher{})
	if _, err := svc.Get(context.Background(), "a\x00"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Get(bad key) = %v, want ErrInvalid", err)
	}
	if n := store.calls.Load(); n != 0 {
		t.Fatalf("store called %d times for an invalid key", n)
	}
}

func TestServiceConcurrentMissesShareOneLoad(t *testing.T) {
	const readers = 20
	store := &fakeStore{entries: map[string]Entry{"k": {Key: "k", Value: "v", Version: NewVersion(time.Now())}}, release: make(chan struct{})}
	cache := &fakeCache{entries: map[string]Entry{}}
	svc := newTestService(store, cache, &fakePublisher{})

	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Go(func() {
			if _, err := svc.Get(context.Background(), "k"); err != nil {
				errs <- err
			}
		})
	}
	for cache.gets.Load() < readers {
		time.Sleep(time.Millisecond)
	}
	// Every reader has missed the cache; give them a moment to join the
	// flight (singleflight exposes no way to observe that), then let the
	// one load finish.
	time.Sleep(50 * time.Millisecond)
	close(store.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Get: %v", err)
	}
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("store queried %d times for %d concurrent misses, want 1", n, readers)
	}
}

func TestServiceWrites(t *testing.T) {
	pub := &fakePublisher{}
	svc := newTestService(&fakeStore{}, &fakeCache{}, pub)
	before := time.Now().UTC().Truncate(time.Microsecond)
	put, err := svc.Put(context.Background(), "k", "v")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	del, err := svc.Delete(context.Background(), "k")
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if len(pub.ops) != 2 || pub.ops[0] != put || pub.ops[1] != del {
		t.Fatalf("published %+v, want the put then the delete", pub.ops)
	}
	if put.Version.Time.Before(before) || put.Version.Time.Nanosecond()%1000 != 0 {
		t.Errorf("put timestamp %v: want now, in whole microseconds", put.Version.Time)
	}
	if put.Version.OpID == del.Version.OpID {
		t.Errorf("two operations share op id %v", put.Version.OpID)
	}
	if del.Kind != KindDelete || put.Kind != KindPut {
		t.Errorf("kinds = %q, %q", put.Kind, del.Kind)
	}
}

func TestServiceWriteErrors(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		value   string
		pubErr  error
		wantErr error
	}{
		{"empty key", "", "v", nil, ErrInvalid},
		{"value too long", "k", "01234567890123456789", nil, ErrInvalid},
		{"broker down", "k", "v", ErrUnavailable, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{err: tt.pubErr}
			svc := newTestService(&fakeStore{}, &fakeCache{}, pub)
			if _, err := svc.Put(context.Background(), tt.key, tt.value); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put = %v, want %v", err, tt.wantErr)
			}
			if len(pub.ops) != 0 {
				t.Fatalf("published %d ops on error", len(pub.ops))
			}
		})
	}
}

func TestLookupOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Lookup
	}{
		{nil, Hit},
		{fmt.Errorf("redis get: %w", ErrCacheMiss), Miss},
		{fmt.Errorf("redis: skipped: %w", ErrCacheDown), CacheFailed},
		{errors.New("i/o timeout"), CacheFailed},
	} {
		if got := LookupOf(tc.err); got != tc.want {
			t.Errorf("LookupOf(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

// listStore lists its live keys in order, as PostgreSQL does, and records
// the prefixes it was asked for.
type listStore struct {
	fakeStore
	keys    []string
	queried []string
}

func (s *listStore) List(_ context.Context, prefix, after string, limit int) ([]Entry, error) {
	s.queried = append(s.queried, prefix)
	var out []Entry
	for _, k := range s.keys {
		if len(out) < limit && k > after && strings.HasPrefix(k, prefix) {
			out = append(out, Entry{Key: k, Value: "v"})
		}
	}
	return out, nil
}

func TestServiceList(t *testing.T) {
	for _, tc := range []struct {
		name    string
		req     ListRequest
		want    []string
		queried []string
		err     bool
	}{
		{"across prefixes, in key order", ListRequest{Prefixes: []string{"a/", "c/"}, Limit: 5}, []string{"a/1", "a/2", "c/1"}, []string{"a/", "c/"}, false},
		{"the limit stops it", ListRequest{Prefixes: []string{"a/", "c/"}, Limit: 2}, []string{"a/1", "a/2"}, []string{"a/"}, false},
		{"after a cursor", ListRequest{Prefixes: []string{"a/", "c/"}, After: "a/1", Limit: 5}, []string{"a/2", "c/1"}, []string{"a/", "c/"}, false},
		{"a prefix the cursor is past is not asked", ListRequest{Prefixes: []string{"a/", "c/"}, After: "b/", Limit: 5}, []string{"c/1"}, []string{"c/"}, false},
		{"a cursor that is no key", ListRequest{Prefixes: []string{"a/"}, After: "a\x00", Limit: 5}, nil, nil, true},
		// A key stored while the limit was higher (16 here) is a page's
		// last key, so a cursor: the listing goes on past it.
		{"a cursor longer than the key limit", ListRequest{Prefixes: []string{"a/", "c/"}, After: "a/2-stored-when-keys-could-be-longer", Limit: 5}, []string{"c/1"}, []string{"a/", "c/"}, false},
		{"a cursor longer than any stored key can be", ListRequest{Prefixes: []string{"a/"}, After: "a/" + strings.Repeat("x", maxIndexedKeyBytes), Limit: 5}, nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &listStore{keys: []string{"a/1", "a/2", "b/1", "c/1"}}
			svc := NewService(store, &fakeCache{entries: map[string]Entry{}}, &fakePublisher{}, Limits{MaxKeyBytes: 16, MaxValueBytes: 16}, zerolog.Nop())
			got, err := svc.List(context.Background(), tc.req)
			var ve *ValidationError
			if tc.err != (errors.As(err, &ve) && ve.Field == "cursor") || !tc.err && err != nil {
				t.Fatalf("List error = %v, want a cursor error: %v", err, tc.err)
			}
			var keys []string
			for _, e := range got {
				keys = append(keys, e.Key)
			}
			if !slices.Equal(keys, tc.want) || !slices.Equal(store.queried, tc.queried) {
				t.Errorf("List = %v asking %v; want %v asking %v", keys, store.queried, tc.want, tc.queried)
			}
		})
	}
}

func TestServiceWriteValidatesThenPublishes(t *testing.T) {
	ctx := context.Background()
	pub := &fakePublisher{}
	svc := newTestService(&fakeStore{}, &fakeCache{entries: map[string]Entry{}}, pub)
	for _, req := range []WriteRequest{
		{Kind: KindPut, Key: "", Value: "v"},
		{Kind: KindPut, Key: "k", Value: strings.Repeat("v", 17)},
		{Kind: KindDelete, Key: "k\n"},
	} {
		if _, err := svc.Write(ctx, req); !errors.Is(err, ErrInvalid) {
			t.Errorf("Write(%+v) = %v, want ErrInvalid", req, err)
		}
	}
	if len(pub.ops) != 0 {
		t.Fatalf("invalid writes were published: %+v", pub.ops)
	}
	res, err := svc.Write(ctx, WriteRequest{Kind: KindPut, Key: "k", Value: "v"})
	if err != nil || res.Status != Pending || len(pub.ops) != 1 || pub.ops[0].Version != res.Op.Version {
		t.Fatalf("Write = %+v, %v (published %+v); want Pending, published", res, err, pub.ops)
	}
}

func TestServiceReadValidatesTheKey(t *testing.T) {
	store := &fakeStore{}
	svc := newTestService(store, &fakeCache{entries: map[string]Entry{}}, &fakePublisher{})
	min := NewVersion(time.Now())
	for _, req := range []ReadRequest{{Key: ""}, {Key: "k\n", WithWriter: true}, {Key: strings.Repeat("k", 17), MinVersion: &min}} {
		if _, err := svc.Read(context.Background(), req); !errors.Is(err, ErrInvalid) {
			t.Errorf("Read(%+v) = %v, want ErrInvalid", req, err)
		}
	}
	if n := store.calls.Load(); n != 0 {
		t.Errorf("invalid reads asked the store %d times", n)
	}
}
