package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
)

// TestApplyBatchRejectedDataIsInvalid: data PostgreSQL refuses whatever the
// retry makes the batch fail with kv.ErrInvalid, and the error text does not
// carry the offending key or value.
func TestApplyBatchRejectedDataIsInvalid(t *testing.T) {
	s := newStore(t)
	tests := []struct {
		name string
		op   kv.Op
		leak string // must not appear in the error
	}{
		{"NUL in key", put("nul\x00key", "v", ver(1, 1)), "nul"},
		{"NUL in value", put("k", "nul\x00value", ver(1, 1)), "nul"},
		{"invalid UTF-8 key", put("bad\xffkey", "v", ver(1, 1)), "bad"},
		{"key over the B-tree entry limit", put(randomText(3_000), "v", ver(1, 1)), ""},
		{"key over the index page", put(randomText(10_000), "v", ver(1, 1)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ApplyBatch(t.Context(), []kv.Op{put("fine", "v", ver(1, 1)), tt.op})
			if !errors.Is(err, kv.ErrInvalid) {
				t.Fatalf("ApplyBatch: got %v, want kv.ErrInvalid", err)
			}
			t.Logf("error: %v", err)
			if tt.leak != "" && strings.Contains(err.Error(), tt.leak) {
				t.Errorf("error %q: carries the key or value", err)
			}
			if len(err.Error()) > 500 {
				t.Errorf("error: got %d bytes of text, want no key in it", len(err.Error()))
			}
		})
	}
	// The batch failed whole: its valid op was not applied either.
	if _, err := s.Get(t.Context(), "fine"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Get(fine) after failed batches: got %v, want kv.ErrNotFound", err)
	}
}

func TestGetRejectedKeyIsInvalid(t *testing.T) {
	s := newStore(t)
	if _, err := s.Get(t.Context(), "nul\x00key"); !errors.Is(err, kv.ErrInvalid) {
		t.Errorf("Get with NUL in key: got %v, want kv.ErrInvalid", err)
	}
}

// TestUnreachableIsUnavailable: every method over a pool that cannot connect
// fails with kv.ErrUnavailable, so callers wait and retry.
func TestUnreachableIsUnavailable(t *testing.T) {
	cfg, err := pgxpool.ParseConfig("postgres://kvstack:kvstack@127.0.0.1:1/kvstack?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg) // connects lazily
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := postgres.NewStore(pool)

	calls := map[string]func(context.Context) error{
		"Get":  func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err },
		"List": func(ctx context.Context) error { _, err := s.List(ctx, "", "", 10); return err },
		"ApplyBatch": func(ctx context.Context) error {
			_, err := s.ApplyBatch(ctx, []kv.Op{put("k", "v", ver(1, 1))})
			return err
		},
		"PurgeTombstones": func(ctx context.Context) error {
			_, err := s.PurgeTombstones(ctx, time.Now())
			return err
		},
		"Ping": s.Ping,
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(t.Context()); !errors.Is(err, kv.ErrUnavailable) {
				t.Errorf("%s: got %v, want kv.ErrUnavailable", name, err)
			}
		})
	}
}

// randomText is incompressible, so PostgreSQL cannot squeeze it into an
// index entry.
func randomText(n int) string {
	b := make([]byte, n*3/4+1)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)[:n]
}
