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

func (h *dyingHandler) Handle(ctx context.Context, batch []consumer.Message) ([]consumer.Result, error) {
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

	first := &dyingHandler{proc: consumer.NewProcessor(s.store, s.cache, consumer.Checks{Limits: kv.DefaultLimits(), Keys: testKeys, MaxClockSkew: time.Minute}, testLogger(t)), applied: make(chan struct{})}
	src, err := rabbitmq.NewSource(s.mq, 100, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ccfg := s.conCfg.Consumer
	ccfg.ShutdownGrace = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consumer.NewRunner(src, first, ccfg, testLogger(t)).Run(ctx) }()
	select {
	case <-first.applied:
	case <-time.After(20 * time.Second):
		t.Fatal("the first consumer never applied its batch")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first consumer: %v", err)
	}

	// The second consumer, a whole process, gets the redelivery. What the
	// first had committed comes back as duplicates; anything it had not
	// reached yet is applied now.
	addr, _ := s.startConsumer()
	var outcomes map[string]float64
	eventually(t, 20*time.Second, "every operation handled", func() (bool, string) {
		outcomes = consumerOutcomes(t, "http://"+addr)
		n := outcomes["duplicate"] + outcomes["applied"]
		return n == float64(len(ops)), fmt.Sprintf("%v, want %d duplicates and applied in all", outcomes, len(ops))
	})
	if got, want := outcomes["duplicate"], float64(first.batch); got != want {
		t.Fatalf("redelivery found %v duplicates; the first consumer had committed %v", got, want)
	}
	if got := outcomes["stale"] + outcomes["dead_lettered"]; got != 0 {
		t.Fatalf("redelivery dropped or dead-lettered %v operations", got)
	}
	s.waitQueuesDrained()
	for _, op := range ops {
		s.waitStored(op)
		s.requireCacheMatchesStore(op.Key)
	}
}
