package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

func TestCRUDThroughAPIAndConsumer(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	s.startConsumer()

	if r := s.do("GET", "/api?key=greeting", ""); r.status != 404 {
		t.Fatalf("GET before any write = %d %v, want 404", r.status, r.body)
	}
	put := s.put("greeting", "hello, wörld")
	s.waitStored(put)

	// The consumer updates Redis right after the commit, so reads are hits;
	// drop the entry to see the miss path fill it.
	s.waitCached(put)
	if r := s.do("GET", "/api?key=greeting", ""); r.status != 200 || r.body["value"] != "hello, wörld" || r.body["source"] != "redis" {
		t.Fatalf("GET after apply = %d %v, want the value from redis", r.status, r.body)
	}
	if err := s.rdb.Del(context.Background(), s.conCfg.Redis.KeyPrefix+"greeting").Err(); err != nil {
		t.Fatal(err)
	}
	if r := s.do("GET", "/api?key=greeting", ""); r.status != 200 || r.body["source"] != "postgres" {
		t.Fatalf("GET after eviction = %d %v, want a read from postgres", r.status, r.body)
	}
	if r := s.do("GET", "/api?key=greeting", ""); r.status != 200 || r.body["source"] != "redis" {
		t.Fatalf("GET after fill = %d %v, want a read from redis", r.status, r.body)
	}

	update := s.put("greeting", "bye")
	s.waitStored(update)
	s.waitCached(update)
	if r := s.do("GET", "/api?key=greeting", ""); r.body["value"] != "bye" {
		t.Fatalf("GET after update = %v", r.body)
	}

	del := s.del("greeting")
	s.waitStored(del)
	s.waitCached(del)
	if r := s.do("GET", "/api?key=greeting", ""); r.status != 404 {
		t.Fatalf("GET after delete = %d %v, want 404", r.status, r.body)
	}
	waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "ok", "write": "ok", "list": "ok"})
}

func TestListAllThroughAPI(t *testing.T) {
	s := newStack(t)
	s.apiCfg.HTTP.ListPageSize = 3 // stream across several internal pages
	s.startAPI()
	s.startConsumer()

	var last kv.Op
	want := map[string]string{}
	for i := range 8 {
		key := fmt.Sprintf("k%02d", i)
		want[key] = fmt.Sprint(i)
		last = s.put(key, fmt.Sprint(i))
	}
	gone := s.del("k03")
	delete(want, "k03")
	s.waitStored(last)
	s.waitStored(gone)

	r := s.do("GET", "/api/all", "")
	items, _ := r.body["items"].([]any)
	if r.status != 200 || len(items) != len(want) {
		t.Fatalf("GET /api/all = %d with %d items, want %d", r.status, len(items), len(want))
	}
	for i, it := range items {
		m := it.(map[string]any)
		if want[m["key"].(string)] != m["value"] || (i > 0 && items[i-1].(map[string]any)["key"].(string) >= m["key"].(string)) {
			t.Fatalf("item %d = %v: wrong value or out of order", i, m)
		}
	}

	var paged []string
	cursor := ""
	for range 10 {
		r := s.do("GET", "/api/all?limit=3"+cursor, "")
		for _, it := range r.body["items"].([]any) {
			paged = append(paged, it.(map[string]any)["key"].(string))
		}
		next, ok := r.body["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = "&cursor=" + url.QueryEscape(next)
	}
	if len(paged) != len(want) {
		t.Fatalf("paging gave %v, want the %d live keys", paged, len(want))
	}
}

// TestOutOfOrderAndDuplicateDelivery feeds the queues directly: every
// operation on a set of keys, shuffled, some twice. The stored state must be
// the newest operation per key, and the cache must agree.
func TestOutOfOrderAndDuplicateDelivery(t *testing.T) {
	s := newStack(t)
	r := rand.New(rand.NewPCG(42, 7))
	base := time.Now().UTC().Truncate(time.Microsecond)
	var ops []kv.Op
	newest := map[string]kv.Op{}
	for i := range 300 {
		key := fmt.Sprintf("key-%d", r.IntN(12))
		op := kv.Op{Kind: kv.KindPut, Key: key, Value: fmt.Sprint("v", i),
			Version: kv.Version{Time: base.Add(time.Duration(r.IntN(50)) * time.Microsecond), OpID: uuid.New()}}
		if r.IntN(4) == 0 {
			op.Kind, op.Value = kv.KindDelete, ""
		}
		ops = append(ops, op)
		if cur, ok := newest[key]; !ok || op.Version.Newer(cur.Version) {
			newest[key] = op
		}
	}
	delivery := append(append([]kv.Op(nil), ops...), ops[:100]...) // with redeliveries
	r.Shuffle(len(delivery), func(i, j int) { delivery[i], delivery[j] = delivery[j], delivery[i] })
	publishOps(t, s.mq, delivery...)

	s.startConsumer()
	for _, op := range newest {
		s.waitStored(op)
	}
	s.waitQueuesDrained()
	for _, op := range newest {
		s.requireCacheMatchesStore(op.Key)
	}
}

func TestDeleteThenOlderPutStaysDeleted(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	older := kv.Op{Kind: kv.KindPut, Key: "phoenix", Value: "risen",
		Version: kv.NewVersion(time.Now().Add(-time.Minute))}
	del := s.del("phoenix")
	// The older put arrives after the delete, followed by a marker: once the
	// marker is stored, the older put has been handled (one queue is FIFO).
	marker := kv.Op{Kind: kv.KindPut, Key: "marker", Value: "m", Version: kv.NewVersion(time.Now())}
	publishOps(t, s.mq, older, marker)
	s.startConsumer()

	s.waitStored(marker)
	s.waitStored(del)
	if r := s.do("GET", "/api?key=phoenix", ""); r.status != 404 {
		t.Fatalf("GET after delete then older put = %d %v, want 404", r.status, r.body)
	}
	s.requireCacheMatchesStore("phoenix")
}

func TestPoisonMessageIsDeadLetteredAndQueueFlows(t *testing.T) {
	s := newStack(t)
	rabbittest.Declare(t, s.mq)
	publishSigned(t, s.mq, kv.KindPut, `{"key":`, `{"key":"k","value":"\u0000","timestamp":"2026-01-01T00:00:00Z","op_id":"00000000-0000-4000-8000-000000000000"}`)
	publishSigned(t, s.mq, kv.KindDelete, `not json at all`)
	good := kv.Op{Kind: kv.KindPut, Key: "after-poison", Value: "ok", Version: kv.NewVersion(time.Now())}
	publishOps(t, s.mq, good)
	s.startConsumer()

	s.waitStored(good)
	rabbittest.WaitCount(t, s.mq, rabbitmq.DLQ(s.mq.QueueAdd), 2, 20*time.Second)
	rabbittest.WaitCount(t, s.mq, rabbitmq.DLQ(s.mq.QueueDel), 1, 20*time.Second)
	s.waitQueuesDrained()
	d, ok := rabbittest.Get(t, s.mq, rabbitmq.DLQ(s.mq.QueueDel))
	if !ok || string(d.Body) != "not json at all" {
		t.Fatalf("DLQ message = %q (present %v), want the poison body unchanged", d.Body, ok)
	}
}

// TestCacheCoherenceUnderConcurrency: writers and readers hammer a few keys
// through the API while the consumer applies. Once the writes stop and the
// queues drain, every key in the store is the newest accepted operation, and
// every key in Redis equals the store.
func TestCacheCoherenceUnderConcurrency(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	s.startConsumer()
	s.startConsumer() // two consumers race on the same keys
	keys := []string{"a", "b", "c", "d", "e", "f"}

	var mu sync.Mutex
	accepted := map[string]kv.Op{}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for i := range 4 {
		readers.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				if r := s.do("GET", "/api?key="+keys[(i+j)%len(keys)], ""); r.status != 200 && r.status != 404 {
					t.Errorf("GET = %d %v", r.status, r.body)
					return
				}
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for i := range 120 {
				key := keys[r.IntN(len(keys))]
				var op kv.Op
				if r.IntN(3) == 0 {
					op = s.del(key)
				} else {
					op = s.put(key, fmt.Sprintf("w%d-%d", w, i))
				}
				mu.Lock()
				if cur, ok := accepted[key]; !ok || op.Version.Newer(cur.Version) {
					accepted[key] = op
				}
				mu.Unlock()
			}
		})
	}
	writers.Wait()
	for _, op := range accepted {
		s.waitStored(op)
	}
	close(stop)
	readers.Wait()
	s.waitQueuesDrained()
	for _, key := range keys {
		s.requireCacheMatchesStore(key)
	}
}

func TestRedisDownReadsFromPostgres(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	s.startConsumer()
	op := s.put("k", "v")
	s.waitStored(op)

	s.apiCfg.Redis.Addr = "127.0.0.1:1" // a second API whose Redis is gone
	s.startAPI()
	if r := s.do("GET", "/api?key=k", ""); r.status != 200 || r.body["source"] != "postgres" || r.body["value"] != "v" {
		t.Fatalf("GET with Redis down = %d %v, want the value from postgres", r.status, r.body)
	}
	// Still ready: reads are served, from PostgreSQL.
	if r := waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "degraded", "write": "ok", "list": "ok"}); r.checks["redis"] != "unavailable" {
		t.Fatalf("readyz with Redis down = %v, want its check unavailable", r)
	}
}

func TestBrokerUnreachableGives503(t *testing.T) {
	s := newStack(t)
	s.apiCfg.RabbitMQ.URL = "amqp://guest:guest@127.0.0.1:1/"
	s.startAPI()
	start := time.Now()
	r := s.do("PUT", "/api", `{"key":"k","value":"v"}`)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.body["error"] != "unavailable" {
		t.Fatalf("PUT with the broker unreachable = %d %v (Retry-After %q), want 503 with Retry-After",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	if took := time.Since(start); took > s.apiCfg.RabbitMQ.PublishTimeout+time.Second {
		t.Fatalf("503 took %s; the publish timeout is %s", took, s.apiCfg.RabbitMQ.PublishTimeout)
	}
	// Still ready: reads and the listing are served.
	if r := waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "ok", "write": "down", "list": "ok"}); r.checks["rabbitmq"] != "unavailable" {
		t.Fatalf("readyz with the broker unreachable = %v, want its check unavailable", r)
	}
}

// TestFullQueueGives503: a work queue at its bound refuses the publish
// (reject-publish), and the PUT gets a prompt 503 with Retry-After, never a
// 202.
func TestFullQueueGives503(t *testing.T) {
	s := newStack(t)
	s.apiCfg.RabbitMQ.QueueMaxLength = 2
	s.startAPI()
	var r response
	var start time.Time
	accepted := 0
	for i := range 10 {
		start = time.Now()
		if r = s.do("PUT", "/api", fmt.Sprintf(`{"key":"k%d","value":"v"}`, i)); r.status != http.StatusAccepted {
			break
		}
		accepted++
	}
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.body["error"] != "unavailable" {
		t.Fatalf("PUT past the bound of 2 (after %d accepted) = %d %v (Retry-After %q), want 503 with Retry-After",
			accepted, r.status, r.body, r.header.Get("Retry-After"))
	}
	// A quorum queue lets one past its bound in before it refuses.
	if accepted > 3 {
		t.Errorf("%d PUTs accepted by a queue bound to 2", accepted)
	}
	if took := time.Since(start); took > s.apiCfg.RabbitMQ.PublishTimeout/2 {
		t.Errorf("the 503 took %s; want it prompt (the publish timeout is %s)", took, s.apiCfg.RabbitMQ.PublishTimeout)
	}
	rabbittest.WaitCount(t, s.mq, s.mq.QueueAdd, accepted, 5*time.Second)
}

// publishOps puts operations on their queues as the API would.
func publishOps(t *testing.T, cfg rabbitmq.Config, ops ...kv.Op) {
	t.Helper()
	rabbittest.Declare(t, cfg)
	for _, op := range ops {
		msg, err := rabbitmq.Message(op, testKeys)
		if err != nil {
			t.Fatal(err)
		}
		queue := cfg.QueueAdd
		if op.Kind == kv.KindDelete {
			queue = cfg.QueueDel
		}
		rabbittest.Publish(t, cfg, queue, msg)
	}
}

// publishSigned publishes each body to the queue of kind, signed with the
// stack's key as the API signs.
func publishSigned(t *testing.T, cfg rabbitmq.Config, kind kv.Kind, bodies ...string) {
	t.Helper()
	queue := cfg.QueueAdd
	if kind == kv.KindDelete {
		queue = cfg.QueueDel
	}
	for _, body := range bodies {
		id, sig := testKeys.Sign(string(kind), "", []byte(body))
		rabbittest.Publish(t, cfg, queue, amqp.Publishing{
			DeliveryMode: amqp.Persistent, Body: []byte(body),
			Headers: amqp.Table{msgsig.KeyIDHeader: id, msgsig.SignatureHeader: sig},
		})
	}
}

// waitQueuesDrained waits until both queues hold no message, ready or
// unacked.
func (s *stack) waitQueuesDrained() {
	s.t.Helper()
	for _, q := range []string{s.mq.QueueAdd, s.mq.QueueDel} {
		rabbittest.WaitCount(s.t, s.mq, q, 0, 20*time.Second)
	}
}

// requireCacheMatchesStore waits until Redis holds nothing for key or
// exactly what PostgreSQL holds (a tombstone for a tombstone). The wait
// covers a consumer between its commit and its cache update; a cache that
// disagrees for good fails the test.
func (s *stack) requireCacheMatchesStore(key string) {
	s.t.Helper()
	eventually(s.t, 10*time.Second, fmt.Sprintf("cache coherent for %q", key), func() (bool, string) {
		stored, inStore := s.storedEntry(key)
		cached, err := s.cache.Get(context.Background(), key)
		switch {
		case errors.Is(err, kv.ErrCacheMiss):
			return true, ""
		case err != nil:
			return false, fmt.Sprintf("cache get: %v", err)
		}
		got, _ := json.Marshal(cached)
		want, _ := json.Marshal(stored)
		return inStore && cached == stored, fmt.Sprintf("cache holds %s, store holds %s (present %v)", got, want, inStore)
	})
}
