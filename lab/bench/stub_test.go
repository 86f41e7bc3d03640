package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/postgres/pgtest"
	kvredis "github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/internal/redis/redistest"
)

// The GET miss's reference reads the key's row and fills the cache with
// it as the API would (a later cache read finds the entry), and answers
// a key without a row with a 503, which the load counts as an error.
func TestMissStubReadsAndFills(t *testing.T) {
	ctx := t.Context()
	url := pgtest.MustURL(t)
	seed := pgtest.MustPoolAt(t, url)
	if _, err := seed.Exec(ctx, `INSERT INTO kv_store (key, value, last_updated, op_id, deleted) VALUES ('k1', 'v1', now(), gen_random_uuid(), false)`); err != nil {
		t.Fatal(err)
	}
	rdb, rc := redistest.MustClient(t)
	pc := postgres.DefaultConfig()
	pc.URL, pc.MaxConns = url, 2
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	h, closeMiss, err := missStub(ctx, StubMiss{Postgres: pc, Redis: rc}, next)
	if err != nil {
		t.Fatal(err)
	}
	defer closeMiss()

	get := func(key string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api?key="+key, nil))
		return rec.Code
	}
	if code := get("k1"); code != http.StatusOK {
		t.Fatalf("GET k1: %d, want 200", code)
	}
	e, err := kvredis.NewCache(rdb, rc, nil).Get(ctx, "k1")
	if err != nil || e.Value != "v1" {
		t.Errorf("the cache after the reference's read: %+v, %v; want k1 = v1", e, err)
	}
	if code := get("absent"); code != http.StatusServiceUnavailable {
		t.Errorf("GET of a key without a row: %d, want 503", code)
	}
}
