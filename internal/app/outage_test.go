package app

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// The private instances the Disruptive tests break, each started on first
// use and removed by TestMain.
var (
	privatePostgres     enginetest.Postgres
	privateRedis        enginetest.Redis
	privateBroker       enginetest.RabbitMQ
	privatePair         enginetest.PostgresPair
	privateRedisCluster enginetest.RedisCluster
)

// TestDisruptivePostgresRestart stops PostgreSQL under a running consumer:
// writes are still accepted (they wait in the queue), the consumer keeps its
// batch and retries, and once PostgreSQL is back the write is applied —
// nothing dead-lettered, nobody restarted. The PostgreSQL is a private
// cluster this package started, never the shared one.
func TestDisruptivePostgresRestart(t *testing.T) {
	t.Setenv("DATABASE_URL", privatePostgres.URL(t))
	s := newStack(t)
	s.startAPI()
	s.startConsumer()
	s.waitStored(s.put("k", "before"))

	start := privatePostgres.Stop(t)
	during := s.put("k", "during") // RabbitMQ alone makes it durable
	// The consumer has taken it (it is no longer ready) but cannot apply it.
	rabbittest.WaitCount(t, s.mq, s.mq.QueueAdd, 0, 20*time.Second)
	start()

	s.waitStored(during)
	s.requireCacheMatchesStore("k")
	for _, q := range []string{s.mq.QueueAdd, s.mq.QueueDel} {
		if n := rabbittest.Count(t, s.mq, rabbitmq.DLQ(q)); n != 0 {
			t.Fatalf("%d messages dead-lettered during a PostgreSQL outage", n)
		}
	}
}

// TestDisruptivePrimaryFailover kills the PostgreSQL primary (-9, and it
// stays down) under a running consumer, on the multi-host DATABASE_URL of a
// primary and its synchronous standby: a write accepted meanwhile is taken
// by the consumer, which fails to apply it (no node takes writes) and keeps
// it — no ack, no dead letter — until the standby is promoted; then it
// lands on the new primary, the consumer's pool having found it by itself.
// The pair is private to this package.
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
	primary := privatePair.Promote(t)
	promoted := time.Now()
	s.pool.Reset() // the test's own reader: its idle sessions died with the old primary
	s.waitStored(during)
	t.Logf("promotion took %s; the batch held through it applied on %s %s later (%s after the kill)",
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
