package app

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// TestDisruptivePostgresRestart stops PostgreSQL under a running consumer:
// writes are still accepted (they wait in the queue), the consumer keeps its
// batch and retries, and once PostgreSQL is back the write is applied —
// nothing dead-lettered, nobody restarted.
func TestDisruptivePostgresRestart(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	s.startConsumer()
	s.waitStored(s.put("k", "before"))

	start := stopPostgres(t)
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

// TestDisruptiveRedisOutage pauses every Redis client while a write is
// applied: reads degrade to PostgreSQL, and the consumer's failed cache
// update is repaired once Redis answers again, so the cache does not keep
// the old value.
func TestDisruptiveRedisOutage(t *testing.T) {
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

// stopPostgres stops the local cluster and returns a function that starts
// it again and waits until it answers; that function also runs in
// t.Cleanup, whatever happens, because the server is shared.
func stopPostgres(t *testing.T) (start func()) {
	t.Helper()
	out, err := exec.Command("pg_lsclusters", "--no-header").Output()
	if err != nil {
		t.Fatalf("pg_lsclusters: %v", err)
	}
	var version, name string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[2] == "5432" {
			version, name = f[0], f[1]
		}
	}
	if version == "" {
		t.Fatalf("no PostgreSQL cluster on port 5432 in:\n%s", out)
	}
	ctl := func(action string, extra ...string) error {
		args := append([]string{"--skip-systemctl-redirect", version, name, action}, extra...)
		if out, err := exec.Command("pg_ctlcluster", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("pg_ctlcluster %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	started := false
	start = func() {
		if started {
			return
		}
		started = true
		if err := ctl("start"); err != nil {
			t.Errorf("%v", err)
		}
		eventually(t, 60*time.Second, "PostgreSQL answering", func() (bool, string) {
			err := exec.Command("pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q").Run()
			return err == nil, fmt.Sprint(err)
		})
	}
	t.Cleanup(start)
	if err := ctl("stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
	return start
}
