package app

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
)

// dyingHandler applies its first batch and then dies before the ack, as a
// consumer killed between commit and ack would.
type dyingHandler struct {
	proc    *consumer.Processor
	applied chan struct{}
	calls   atomic.Int32
	batch   int // messages in the batch it applied
}

func (h *dyingHandler) Handle(ctx context.Context, batch []consumer.Message) ([]consumer.Verdict, error) {
	if h.calls.Add(1) == 1 {
		if _, err := h.proc.Handle(ctx, batch); err != nil {
			return nil, err
		}
		h.batch = len(batch)
		close(h.applied)
	}
	return nil, errors.New("killed before the ack")
}

// TestRedeliveryAfterCommitChangesNothing: a batch committed but never acked
// is delivered again to another consumer, which finds every operation
// already applied and leaves the store and the cache as they were.
func TestRedeliveryAfterCommitChangesNothing(t *testing.T) {
	s := newStack(t)
	var ops []kv.Op
	for _, key := range []string{"a", "b", "c"} {
		ops = append(ops, kv.Op{Kind: kv.KindPut, Key: key, Value: "v-" + key, Version: kv.NewVersion(time.Now())})
	}
	ops = append(ops, kv.Op{Kind: kv.KindDelete, Key: "d", Version: kv.NewVersion(time.Now())})
	publishOps(t, s.mq, ops...)

	cfg := s.mq
	cfg.ShutdownGrace = 50 * time.Millisecond
	first := &dyingHandler{proc: consumer.NewProcessor(s.store, s.cache, kv.DefaultLimits, testLogger(t)), applied: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rabbitmq.NewConsumer(cfg, first, testLogger(t)).Run(ctx) }()
	select {
	case <-first.applied:
	case <-time.After(20 * time.Second):
		t.Fatal("the first consumer never applied its batch")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first consumer: %v", err)
	}

	// The second consumer gets the redelivery.
	second := consumer.NewProcessor(s.store, s.cache, kv.DefaultLimits, testLogger(t))
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- rabbitmq.NewConsumer(s.mq, second, testLogger(t)).Run(ctx2) }()
	defer func() {
		cancel2()
		if err := <-done2; err != nil {
			t.Errorf("second consumer: %v", err)
		}
	}()
	// What the first consumer committed comes back as duplicates; anything
	// it had not reached yet is applied now.
	eventually(t, 20*time.Second, "every operation handled", func() (bool, string) {
		dup, applied := second.Stats.Duplicate.Load(), second.Stats.Applied.Load()
		return dup+applied == int64(len(ops)), fmt.Sprintf("%d duplicates and %d applied, want %d in all", dup, applied, len(ops))
	})
	if got, want := second.Stats.Duplicate.Load(), int64(first.batch); got != want {
		t.Fatalf("redelivery found %d duplicates; the first consumer had committed %d", got, want)
	}
	if got := second.Stats.Stale.Load() + second.Stats.DeadLettered.Load(); got != 0 {
		t.Fatalf("redelivery dropped or dead-lettered %d operations", got)
	}
	s.waitQueuesDrained()
	for _, op := range ops {
		s.waitStored(op)
		s.requireCacheMatchesStore(op.Key)
	}
}
