package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// recorder is a consumer.Handler that records every call and answers with
// decide (all Ack when nil).
type recorder struct {
	mu     sync.Mutex
	calls  [][]consumer.Message
	decide func(call int, batch []consumer.Message) ([]consumer.Verdict, error)
	called chan struct{}
}

func newRecorder(decide func(int, []consumer.Message) ([]consumer.Verdict, error)) *recorder {
	return &recorder{decide: decide, called: make(chan struct{}, 1)}
}

func (r *recorder) Handle(ctx context.Context, batch []consumer.Message) ([]consumer.Verdict, error) {
	r.mu.Lock()
	call := len(r.calls)
	r.calls = append(r.calls, slices.Clone(batch))
	r.mu.Unlock()
	select {
	case r.called <- struct{}{}:
	default:
	}
	if r.decide == nil {
		return make([]consumer.Verdict, len(batch)), nil
	}
	return r.decide(call, batch)
}

// snapshot returns the bodies of each call.
func (r *recorder) snapshot() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]string, len(r.calls))
	for i, b := range r.calls {
		for _, m := range b {
			out[i] = append(out[i], string(m.Body))
		}
	}
	return out
}

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

// startConsumer runs a consumer until the returned stop is called (or the
// test ends); stop checks that Run returned nil in time.
func startConsumer(t *testing.T, cfg rabbitmq.Config, h consumer.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	c := rabbitmq.NewConsumer(cfg, h, testLog(t))
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v after cancel, want nil", err)
				}
			case <-time.After(cfg.ShutdownGrace + 5*time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func bodies(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s%03d", prefix, i)
	}
	return out
}

func TestConsumerBatches(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		wait      time.Duration
		published int
		want      []int // batch sizes
	}{
		{"by size", 10, 10 * time.Second, 30, []int{10, 10, 10}},
		{"by wait", 100, 50 * time.Millisecond, 7, []int{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rabbittest.MustConfig(t)
			cfg.BatchSize, cfg.BatchWait = tt.size, tt.wait
			rabbittest.Declare(t, cfg)
			rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, bodies("m", tt.published)...)

			rec := newRecorder(nil)
			start := time.Now()
			stop := startConsumer(t, cfg, rec)
			waitFor(t, 10*time.Second, "all messages handled", func() bool {
				n := 0
				for _, b := range rec.snapshot() {
					n += len(b)
				}
				return n == tt.published
			})
			if tt.wait < time.Second {
				if took := time.Since(start); took < tt.wait {
					t.Errorf("partial batch handled after %s, before the %s wait", took, tt.wait)
				}
			}
			stop()
			var sizes []int
			for _, b := range rec.snapshot() {
				sizes = append(sizes, len(b))
			}
			if !slices.Equal(sizes, tt.want) {
				t.Errorf("batch sizes = %v, want %v", sizes, tt.want)
			}
			if n := rabbittest.Count(t, cfg, cfg.QueueAdd); n != 0 {
				t.Errorf("%d messages left in the queue after stop, want all acked", n)
			}
		})
	}
}

func TestConsumerBothQueuesOneChannel(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	cfg.BatchSize = 50
	rabbittest.Declare(t, cfg)
	const n = 400
	rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, bodies("add", n)...)
	rabbittest.PublishRaw(t, cfg, cfg.QueueDel, bodies("del", n)...)

	rec := newRecorder(nil)
	stop := startConsumer(t, cfg, rec)
	seen := func() map[string]kv.Kind {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		m := map[string]kv.Kind{}
		for _, b := range rec.calls {
			for _, msg := range b {
				m[string(msg.Body)] = msg.Kind
			}
		}
		return m
	}
	waitFor(t, 20*time.Second, "every message handled", func() bool { return len(seen()) == 2*n })
	stop()

	// A multiple-ack that covered a delivery not yet handed to the handler
	// would lose it: every message must have been seen, with its kind.
	for body, kind := range seen() {
		want := kv.KindPut
		if body[:3] == "del" {
			want = kv.KindDelete
		}
		if kind != want {
			t.Errorf("message %s came with kind %q, want %q", body, kind, want)
		}
	}
	for _, q := range cfg.Topology().Queues() {
		if got := rabbittest.Count(t, cfg, q); got != 0 {
			t.Errorf("%s holds %d messages after stop, want 0", q, got)
		}
	}
}

func TestConsumerDeadLetters(t *testing.T) {
	tests := []struct {
		name   string
		decide func(int, []consumer.Message) ([]consumer.Verdict, error)
	}{
		{"verdict", func(_ int, b []consumer.Message) ([]consumer.Verdict, error) {
			v := make([]consumer.Verdict, len(b))
			for i, m := range b {
				if string(m.Body) == "bad" || len(m.Body) == 0 {
					v[i] = consumer.DeadLetter
				}
			}
			return v, nil
		}},
		{"panic", func(_ int, b []consumer.Message) ([]consumer.Verdict, error) {
			for _, m := range b {
				if string(m.Body) == "bad" || len(m.Body) == 0 {
					panic("handler cannot cope with " + string(m.Body))
				}
			}
			return make([]consumer.Verdict, len(b)), nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rabbittest.MustConfig(t)
			cfg.BatchWait = 5 * time.Millisecond
			rabbittest.Declare(t, cfg)
			rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, []byte("good1"), []byte("bad"), []byte("good2"))
			rabbittest.PublishRaw(t, cfg, cfg.QueueDel, []byte{})

			rec := newRecorder(tt.decide)
			stop := startConsumer(t, cfg, rec)
			rabbittest.WaitCount(t, cfg, rabbitmq.DLQ(cfg.QueueAdd), 1, 10*time.Second)
			rabbittest.WaitCount(t, cfg, rabbitmq.DLQ(cfg.QueueDel), 1, 10*time.Second)

			// The queue keeps flowing after a dead-letter.
			rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, []byte("later"))
			waitFor(t, 10*time.Second, "the later message handled", func() bool {
				for _, b := range rec.snapshot() {
					if slices.Contains(b, "later") {
						return true
					}
				}
				return false
			})
			stop()

			d, ok := rabbittest.Get(t, cfg, rabbitmq.DLQ(cfg.QueueAdd))
			if !ok || string(d.Body) != "bad" {
				t.Errorf("DLQ of %s holds %q (ok=%v), want \"bad\"", cfg.QueueAdd, d.Body, ok)
			}
			for _, q := range cfg.Topology().Queues() {
				if got := rabbittest.Count(t, cfg, q); got != 0 {
					t.Errorf("%s holds %d messages after stop, want all acked", q, got)
				}
			}
		})
	}
}

func TestConsumerHandlerErrorKeepsBatch(t *testing.T) {
	errDown := errors.New("postgres is down")
	tests := []struct {
		name     string
		failures int // calls that fail before success; -1: never succeeds
	}{
		{"recovers", 3},
		{"never recovers", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rabbittest.MustConfig(t)
			cfg.BatchWait = 5 * time.Millisecond
			cfg.ShutdownGrace = time.Second
			rabbittest.Declare(t, cfg)
			sent := bodies("m", 5)
			rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, sent...)

			rec := newRecorder(func(call int, b []consumer.Message) ([]consumer.Verdict, error) {
				if tt.failures < 0 || call < tt.failures {
					return nil, errDown
				}
				return make([]consumer.Verdict, len(b)), nil
			})
			stop := startConsumer(t, cfg, rec)
			wantCalls := tt.failures + 1
			if tt.failures < 0 {
				wantCalls = 3
			}
			waitFor(t, 10*time.Second, fmt.Sprintf("%d handler calls", wantCalls), func() bool {
				return len(rec.snapshot()) >= wantCalls
			})
			stop()

			var want []string
			for _, b := range sent {
				want = append(want, string(b))
			}
			for i, got := range rec.snapshot() {
				if !slices.Equal(got, want) {
					t.Errorf("call %d got %v, want the same batch %v", i, got, want)
				}
			}
			wantLeft := 0
			if tt.failures < 0 {
				wantLeft = len(sent) // never acked: requeued on close
			}
			if got := rabbittest.Count(t, cfg, cfg.QueueAdd); got != wantLeft {
				t.Errorf("queue holds %d messages after stop, want %d", got, wantLeft)
			}
			if got := rabbittest.Count(t, cfg, rabbitmq.DLQ(cfg.QueueAdd)); got != 0 {
				t.Errorf("DLQ holds %d messages, want none: errors must not dead-letter", got)
			}
		})
	}
}

func TestConsumerGracefulStopAcksBatchInHand(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	cfg.BatchSize = 5
	cfg.Prefetch = 10
	rabbittest.Declare(t, cfg)
	rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, bodies("m", 20)...)

	release := make(chan struct{})
	handlerCtxErr := make(chan error, 1)
	rec := newRecorder(nil)
	h := handlerFunc(func(ctx context.Context, b []consumer.Message) ([]consumer.Verdict, error) {
		v, err := rec.Handle(ctx, b)
		if len(rec.snapshot()) == 1 {
			<-release
			handlerCtxErr <- ctx.Err()
		}
		return v, err
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rabbitmq.NewConsumer(cfg, h, testLog(t)).Run(ctx) }()
	select {
	case <-rec.called: // the first batch is in the handler
	case <-time.After(10 * time.Second):
		t.Fatal("no batch handled")
	}
	cancel() // stop while the batch is in hand…
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(cfg.ShutdownGrace + 5*time.Second):
		t.Fatal("Run did not return after cancel")
	}

	if err := <-handlerCtxErr; err != nil {
		t.Errorf("handler's context ended within the grace period: %v", err)
	}
	if got := len(rec.snapshot()); got != 1 {
		t.Errorf("handler called %d times, want only the batch in hand", got)
	}
	// …the batch in hand (5) was acked; the prefetched rest went back.
	if got := rabbittest.Count(t, cfg, cfg.QueueAdd); got != 15 {
		t.Errorf("queue holds %d messages after stop, want 15", got)
	}
}

type handlerFunc func(ctx context.Context, b []consumer.Message) ([]consumer.Verdict, error)

func (f handlerFunc) Handle(ctx context.Context, b []consumer.Message) ([]consumer.Verdict, error) {
	return f(ctx, b)
}
