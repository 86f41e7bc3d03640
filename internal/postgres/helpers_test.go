package postgres_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/postgres/pgtest"
)

// base is a fixed instant, so versions in the tests read as small offsets.
var base = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// ver is the version at base+micros with an op id whose last byte is id, so
// that ties on time are decided by id.
func ver(micros int64, id byte) kv.Version {
	var u uuid.UUID
	u[15] = id
	return kv.Version{Time: base.Add(time.Duration(micros) * time.Microsecond), OpID: u}
}

func put(key, value string, v kv.Version) kv.Op {
	return kv.Op{Kind: kv.KindPut, Key: key, Value: value, Version: v}
}

func del(key string, v kv.Version) kv.Op {
	return kv.Op{Kind: kv.KindDelete, Key: key, Version: v}
}

func newStore(t *testing.T) *postgres.Store {
	t.Helper()
	return postgres.NewStore(pgtest.MustPool(t))
}

// mustApply applies ops and fails the test on error.
func mustApply(t *testing.T, s *postgres.Store, ops ...kv.Op) []kv.Outcome {
	t.Helper()
	out, err := s.ApplyBatch(t.Context(), ops)
	if err != nil {
		t.Fatalf("ApplyBatch(%d ops): %v", len(ops), err)
	}
	if len(out) != len(ops) {
		t.Fatalf("ApplyBatch(%d ops): got %d outcomes", len(ops), len(out))
	}
	return out
}

func sameEntry(a, b kv.Entry) bool {
	return a.Key == b.Key && a.Value == b.Value && a.Deleted == b.Deleted && a.Version.Compare(b.Version) == 0
}
