package app

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// The private instances the Disruptive tests break, each started on first
// use and removed by TestMain.
var (
	privatePostgres     enginetest.Postgres
	privateRedis        enginetest.Redis
	privateBroker       enginetest.RabbitMQ
	privatePair         enginetest.Patroni
	privateRedisCluster enginetest.RedisCluster
)

// TestDisruptivePostgresRestart stops PostgreSQL under a running API and
// consumer. The API stays ready, its reads degraded and its listing down:
// cache hits are served (none fails), a miss and the listing get a prompt
// 503, and writes are still accepted (RabbitMQ alone makes them durable).
// The consumer, which cannot apply, is not ready; it keeps its batch and
// retries, and once PostgreSQL is back the write is applied — nothing
// dead-lettered, nobody restarted. The PostgreSQL is a private cluster this
// package started, never the shared one.
func TestDisruptivePostgresRestart(t *testing.T) {
	t.Setenv("DATABASE_URL", privatePostgres.URL(t))
	s := newStack(t)
	s.startAPI()
	consumer, _ := s.startConsumer()
	consumer = "http://" + consumer
	values := s.putCached(10)
	s.waitStored(s.put("k", "before"))

	start := privatePostgres.Stop(t)
	api := waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "degraded", "write": "ok", "list": "down"})
	con := waitReadiness(t, consumer, http.StatusServiceUnavailable, map[string]string{"apply": "down"})
	if api.checks["postgres"] != "unavailable" || api.status != "ready" || con.status != "not_ready" {
		t.Errorf("readiness with PostgreSQL stopped: api %v, consumer %v", api, con)
	}
	requireGauges(t, s.api, map[string]float64{"read": 1, "write": 2, "list": 0}, 1)
	requireGauges(t, consumer, map[string]float64{"apply": 0}, 0)

	hits := s.readLoad(s.api, slices.Collect(maps.Keys(values)), 2*time.Second, servedFrom("redis", values))
	if hits.counts["failed"] > 0 || hits.counts["ok"] == 0 {
		t.Errorf("cache hits with PostgreSQL stopped: %v, want every one served", hits)
	}
	for _, path := range []string{"/api?key=never-written", "/api/all", "/api/all?limit=5"} {
		began := time.Now()
		r := s.do("GET", path, "")
		if took := time.Since(began); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || took > readDeadline {
			t.Errorf("GET %s with PostgreSQL stopped = %d %v after %s, want a 503 with Retry-After within %s", path, r.status, r.body, took, readDeadline)
		}
	}
	during := s.put("k", "during") // RabbitMQ alone makes it durable
	// The consumer has taken it (it is no longer ready) but cannot apply it.
	rabbittest.WaitCount(t, s.mq, s.mq.QueueAdd, 0, 20*time.Second)
	t.Logf("with PostgreSQL stopped: cache hits %v", hits)
	start()

	s.waitStored(during)
	s.requireCacheMatchesStore("k")
	for _, q := range []string{s.mq.QueueAdd, s.mq.QueueDel} {
		if n := rabbittest.Count(t, s.mq, rabbitmq.DLQ(q)); n != 0 {
			t.Fatalf("%d messages dead-lettered during a PostgreSQL outage", n)
		}
	}
	waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "ok", "write": "ok", "list": "ok"})
	waitReadiness(t, consumer, http.StatusOK, map[string]string{"apply": "ok"})
}

// readDeadline is how long a read may take when its dependency is down:
// the bound of a store read (kv.Service's load), past which the answer is a
// 503 all the same.
const readDeadline = 5 * time.Second

// putCached writes n keys through the API and waits until each is applied
// and cached; it returns their values.
func (s *stack) putCached(n int) map[string]string {
	s.t.Helper()
	values := map[string]string{}
	var ops []kv.Op
	for i := range n {
		key, value := fmt.Sprintf("cached-%d", i), fmt.Sprintf("v%d", i)
		values[key] = value
		ops = append(ops, s.put(key, value))
	}
	for _, op := range ops {
		s.waitStored(op)
		s.waitCached(op)
	}
	return values
}

// servedFrom judges a read: a 200 with the key's value, from source.
func servedFrom(source string, values map[string]string) func(response) bool {
	return func(r response) bool {
		key, _ := r.body["key"].(string)
		return r.status == http.StatusOK && r.body["source"] == source && r.body["value"] == values[key]
	}
}

// requireGauges fails unless base exports these capability gauges and
// kvstack_ready.
func requireGauges(t *testing.T, base string, want map[string]float64, ready float64) {
	t.Helper()
	eventually(t, 10*time.Second, "the capability gauges", func() (bool, string) {
		got, r := capabilityGauges(t, base)
		return maps.Equal(got, want) && r == ready, fmt.Sprintf("kvstack_capability %v, kvstack_ready %v; want %v, %v", got, r, want, ready)
	})
}

// TestDisruptivePrimaryFailover loses the PostgreSQL primary's machine
// (its Patroni and postgres killed -9, kept down) under a running
// consumer, on the multi-host DATABASE_URL of a primary and its
// synchronous standby: a write accepted meanwhile is taken by the
// consumer, which fails to apply it (no node takes writes) and keeps it —
// no ack, no dead letter — until Patroni promotes the standby; then it
// lands on the new primary, the consumer's pool having found it by itself.
// The cluster is private to this package.
func TestDisruptivePrimaryFailover(t *testing.T) {
	t.Setenv("DATABASE_URL", privatePair.URL(t))
	s := newStack(t)
	s.startAPI()
	consumer, _ := s.startConsumer()
	before := s.put("k", "before")
	s.waitStored(before)

	killed := privatePair.KillPrimary(t)
	during := s.put("k", "during") // RabbitMQ alone makes it durable
	rabbittest.WaitCount(t, s.mq, s.mq.QueueAdd, 0, 20*time.Second)
	eventually(t, 20*time.Second, "a failed apply while no node takes writes", func() (bool, string) {
		n := counter(t, scrape(t, "http://"+consumer, false), "kvstack_dependency_errors_total", "dependency", "postgres", "operation", "apply_batch")
		return n > 0, fmt.Sprintf("%v apply_batch errors", n)
	})
	promoting := time.Now()
	primary := privatePair.Promoted(t)
	promoted := time.Now()
	s.pool.Reset() // the test's own reader: its idle sessions died with the old primary
	s.waitStored(during)
	t.Logf("the promotion came %s after the first failed apply; the batch held through it applied on %s %s later (%s after the kill)",
		promoted.Sub(promoting).Round(time.Millisecond), primary.Program().Name,
		time.Since(promoted).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	s.requireCacheMatchesStore("k")
	for _, q := range []string{s.mq.QueueAdd, s.mq.QueueDel} {
		if n := rabbittest.Count(t, s.mq, rabbitmq.DLQ(q)); n != 0 {
			t.Fatalf("%d messages dead-lettered during the failover", n)
		}
	}
	after := s.put("k", "after")
	s.waitStored(after)
}

// counter is the value of the series of a counter with these label pairs.
func counter(t *testing.T, exposition, name string, labels ...string) float64 {
	t.Helper()
	for _, m := range metricFamily(t, exposition, name).GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && have[labels[i]] == labels[i+1]
		}
		if match {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestDisruptiveRedisOutage pauses every Redis client while a write is
// applied: reads degrade to PostgreSQL, and the consumer's failed cache
// update is repaired once Redis answers again, so the cache does not keep
// the old value. The Redis is a private server this package started: the
// pause reaches no one else's clients.
func TestDisruptiveRedisOutage(t *testing.T) {
	t.Setenv("REDIS_ADDR", privateRedis.Addr(t))
	s := newStack(t)
	s.startAPI()
	s.startConsumer()
	before := s.put("k", "before")
	s.waitStored(before)
	s.waitCached(before)

	const pause = 3 * time.Second
	if err := s.rdb.Do(context.Background(), "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	paused := time.Now()
	after := s.put("k", "after")
	s.waitStored(after)
	r := s.do("GET", "/api?key=k", "")
	if time.Since(paused) < pause && (r.status != http.StatusOK || r.body["source"] != "postgres" || r.body["value"] != "after") {
		t.Fatalf("GET while Redis is paused = %d %v, want the new value from postgres", r.status, r.body)
	}
	s.waitCached(after)
	s.requireCacheMatchesStore("k")
}

// TestDisruptiveRedisStop stops Redis under a running API and consumer:
// both stay ready, reads and the apply degraded. Every read is answered,
// from PostgreSQL; writes are accepted and applied; once Redis is back the
// cache is repaired and every capability is whole again. The Redis is a
// private server this package started.
func TestDisruptiveRedisStop(t *testing.T) {
	t.Setenv("REDIS_ADDR", privateRedis.Addr(t))
	s := newStack(t)
	s.startAPI()
	consumer, _ := s.startConsumer()
	consumer = "http://" + consumer
	values := s.putCached(10)

	start := privateRedis.Stop(t)
	api := waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "degraded", "write": "ok", "list": "ok"})
	con := waitReadiness(t, consumer, http.StatusOK, map[string]string{"apply": "degraded"})
	if api.checks["redis"] != "unavailable" || !strings.Contains(api.reasons["read"], "postgres") || con.checks["redis"] != "unavailable" {
		t.Errorf("readiness with Redis stopped: api %v, consumer %v", api, con)
	}
	requireGauges(t, s.api, map[string]float64{"read": 1, "write": 2, "list": 2}, 1)
	requireGauges(t, consumer, map[string]float64{"apply": 1}, 1)

	reads := s.readLoad(s.api, slices.Collect(maps.Keys(values)), 2*time.Second, servedFrom("postgres", values))
	if reads.counts["failed"] > 0 || reads.counts["ok"] == 0 {
		t.Errorf("reads with Redis stopped: %v, want every one served from PostgreSQL", reads)
	}
	during := s.put("cached-0", "during")
	s.waitStored(during)
	if r := s.do("GET", "/api/all?limit=100", ""); r.status != http.StatusOK {
		t.Errorf("GET /api/all with Redis stopped = %d %v", r.status, r.body)
	}
	t.Logf("with Redis stopped: reads %v", reads)
	start()

	waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "ok", "write": "ok", "list": "ok"})
	waitReadiness(t, consumer, http.StatusOK, map[string]string{"apply": "ok"})
	s.waitCached(during) // the update the consumer owed the cache
	s.requireCacheMatchesStore("cached-0")
}

// TestDisruptiveBrokerStop stops RabbitMQ under a running API and consumer.
// The API stays ready, its writes down: every read is served, and writes
// get a prompt 503 with Retry-After (never a hang, never a 202), a write
// that would wait too, before any wait. The consumer, which has nothing to
// apply from, is not ready. Once the broker is back, both heal by
// themselves and every accepted write is applied. The broker is a private
// node this package started, never the shared one.
func TestDisruptiveBrokerStop(t *testing.T) {
	t.Setenv("RABBITMQ_URL", privateBroker.URL(t))
	s := newStack(t)
	s.startAPI()
	consumer, _ := s.startConsumer()
	consumer = "http://" + consumer
	values := s.putCached(10)

	start := privateBroker.Stop(t)
	api := waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "ok", "write": "down", "list": "ok"})
	con := waitReadiness(t, consumer, http.StatusServiceUnavailable, map[string]string{"apply": "down"})
	if api.checks["rabbitmq"] != "unavailable" || con.checks["rabbitmq"] != "unavailable" {
		t.Errorf("readiness with the broker stopped: api %v, consumer %v", api, con)
	}
	requireGauges(t, s.api, map[string]float64{"read": 2, "write": 0, "list": 2}, 1)
	requireGauges(t, consumer, map[string]float64{"apply": 0}, 0)

	reads := s.readLoad(s.api, slices.Collect(maps.Keys(values)), 2*time.Second, servedFrom("redis", values))
	if reads.counts["failed"] > 0 || reads.counts["ok"] == 0 {
		t.Errorf("reads with the broker stopped: %v, want every one served", reads)
	}
	for _, path := range []string{"/api", "/api?wait=applied"} {
		began := time.Now()
		r := s.do("PUT", path, `{"key":"k","value":"during"}`)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.body["error"] != "unavailable" {
			t.Fatalf("PUT %s with the broker stopped = %d %v, want 503 with Retry-After", path, r.status, r.body)
		}
		if took := time.Since(began); took > s.apiCfg.RabbitMQ.PublishTimeout+time.Second {
			t.Fatalf("503 took %s; the publish timeout is %s", took, s.apiCfg.RabbitMQ.PublishTimeout)
		}
	}
	t.Logf("with the broker stopped: reads %v", reads)
	start()

	var after kv.Op
	eventually(t, 60*time.Second, "accepting writes again", func() (bool, string) {
		r := s.do("PUT", "/api", `{"key":"k","value":"after"}`)
		if r.status == http.StatusAccepted {
			after = acceptedOp(t, kv.KindPut, "k", "after", r)
		}
		return r.status == http.StatusAccepted, fmt.Sprintf("PUT = %d %v", r.status, r.body)
	})
	s.waitStored(after)
	s.requireCacheMatchesStore("k")
	waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "ok", "write": "ok", "list": "ok"})
	waitReadiness(t, consumer, http.StatusOK, map[string]string{"apply": "ok"})
}
