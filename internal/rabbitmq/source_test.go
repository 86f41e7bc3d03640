package rabbitmq_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func bodies(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s%03d", prefix, i)
	}
	return out
}

// openSession opens a session of a source on cfg's topology; it is closed
// when the test ends.
func openSession(t *testing.T, cfg rabbitmq.Config, prefetch int) consumer.Session {
	t.Helper()
	src, err := rabbitmq.NewSource(cfg, prefetch, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := src.Open(context.Background())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// take receives n deliveries, failing the test if they do not come.
func take(t *testing.T, s consumer.Session, n int) []consumer.Delivery {
	t.Helper()
	var out []consumer.Delivery
	for len(out) < n {
		select {
		case d := <-s.Deliveries():
			out = append(out, d)
		case <-s.Done():
			t.Fatalf("session lost after %d of %d deliveries: %v", len(out), n, s.Err())
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d deliveries after 10s", len(out), n)
		}
	}
	return out
}

func applied(n int) []kv.Outcome { return make([]kv.Outcome, n) }

// TestSourceSettlesInterleavedQueues: both queues arrive on one session,
// each in its own order, with its kind; batches that interleave the two are
// settled by one multiple-ack per queue, which never covers a delivery of
// the other queue or one not yet taken.
func TestSourceSettlesInterleavedQueues(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	rabbittest.Declare(t, cfg)
	const n = 300
	rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, bodies("add", n)...)
	rabbittest.PublishRaw(t, cfg, cfg.QueueDel, bodies("del", n)...)

	s := openSession(t, cfg, 64)
	next := map[string]int{}
	lastTag := map[string]uint64{}
	for taken := 0; taken < 2*n; {
		batch := take(t, s, min(37, 2*n-taken))
		for _, d := range batch {
			prefix, want := "add", kv.KindPut
			if d.Queue == cfg.QueueDel {
				prefix, want = "del", kv.KindDelete
			}
			if d.Kind != want || string(d.Body) != fmt.Sprintf("%s%03d", prefix, next[d.Queue]) || d.Tag <= lastTag[d.Queue] {
				t.Fatalf("delivery %s (kind %s, tag %d) out of order on %s: want %s%03d after tag %d",
					d.Body, d.Kind, d.Tag, d.Queue, prefix, next[d.Queue], lastTag[d.Queue])
			}
			next[d.Queue]++
			lastTag[d.Queue] = d.Tag
			if !strings.Contains(fmt.Sprint(d.Attrs), "rabbitmq") {
				t.Fatalf("delivery attributes %v do not name the system", d.Attrs)
			}
		}
		if err := s.Settle(batch, applied(len(batch))); err != nil {
			t.Fatalf("Settle: %v", err)
		}
		taken += len(batch)
	}
	s.Stop()
	_ = s.Close()
	for _, q := range cfg.Topology().Queues() {
		if got := rabbittest.Count(t, cfg, q); got != 0 {
			t.Errorf("%s holds %d messages after everything was settled, want 0", q, got)
		}
	}
}

// TestSourceSettleCoversOnlyTheBatch: what was delivered (prefetched) but
// not settled goes back to the queue at Close.
func TestSourceSettleCoversOnlyTheBatch(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	rabbittest.Declare(t, cfg)
	rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, bodies("m", 10)...)
	s := openSession(t, cfg, 10)
	batch := take(t, s, 4)
	if err := s.Settle(batch, applied(4)); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	_ = s.Close()
	rabbittest.WaitCount(t, cfg, cfg.QueueAdd, 6, 10*time.Second)
}

func TestSourceDeadLetters(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	rabbittest.Declare(t, cfg)
	rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, []byte("good1"), []byte("bad"), []byte("good2"))
	rabbittest.PublishRaw(t, cfg, cfg.QueueDel, []byte("bad-del"))
	s := openSession(t, cfg, 10)
	batch := take(t, s, 4)
	outcomes := make([]kv.Outcome, len(batch))
	for i, d := range batch {
		if strings.HasPrefix(string(d.Body), "bad") {
			outcomes[i] = kv.DeadLettered
		}
	}
	if err := s.Settle(batch, outcomes); err != nil {
		t.Fatal(err)
	}
	rabbittest.WaitCount(t, cfg, rabbitmq.DLQ(cfg.QueueAdd), 1, 10*time.Second)
	rabbittest.WaitCount(t, cfg, rabbitmq.DLQ(cfg.QueueDel), 1, 10*time.Second)
	if d, ok := rabbittest.Get(t, cfg, rabbitmq.DLQ(cfg.QueueAdd)); !ok || string(d.Body) != "bad" {
		t.Errorf("DLQ of %s holds %q (ok=%v), want \"bad\"", cfg.QueueAdd, d.Body, ok)
	}
	_ = s.Close()
	for _, q := range cfg.Topology().Queues() {
		if got := rabbittest.Count(t, cfg, q); got != 0 {
			t.Errorf("%s holds %d messages, want every one settled", q, got)
		}
	}
}

// TestSourceSessionLostWhenAQueueGoes: the broker cancels a consumer whose
// queue is deleted; the session says it is lost, and why.
func TestSourceSessionLostWhenAQueueGoes(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	rabbittest.Declare(t, cfg)
	s := openSession(t, cfg, 10)
	conn := rabbittest.MustDial(t, cfg)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDelete(cfg.QueueDel, false, false, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
		if err := s.Err(); err == nil || !strings.Contains(err.Error(), cfg.QueueDel) {
			t.Errorf("Err = %v, want it to name %s", err, cfg.QueueDel)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not notice its queue was deleted")
	}
}

// handlerFunc is a consumer.Handler.
type handlerFunc func(ctx context.Context, b []consumer.Message) ([]consumer.Result, error)

func (f handlerFunc) Handle(ctx context.Context, b []consumer.Message) ([]consumer.Result, error) {
	return f(ctx, b)
}

// startRunner runs a consumer.Runner on a Source of cfg until the test
// ends, and checks that it stops cleanly.
func startRunner(t *testing.T, cfg rabbitmq.Config, h consumer.Handler) {
	t.Helper()
	ccfg := consumer.DefaultConfig()
	ccfg.BatchWait, ccfg.ShutdownGrace = 5*time.Millisecond, 5*time.Second
	src, err := rabbitmq.NewSource(cfg, cfg.PrefetchFor(ccfg.BatchSize), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consumer.NewRunner(src, h, ccfg, testLog(t)).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v after cancel, want nil", err)
			}
		case <-time.After(ccfg.ShutdownGrace + 5*time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
}
