package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

func putOp(key string) kv.Op {
	return kv.Op{Kind: kv.KindPut, Key: key, Value: "v", Version: kv.NewVersion(time.Now())}
}

// TestPublishPastTheBoundIsRefused: a work queue at its bound
// (x-max-length, x-overflow reject-publish) nacks the next publish, which
// fails at once with ErrNacked, a kv.ErrUnavailable (the API's 503), and
// leaves the queue as it was; once the consumer takes a message, a publish
// is confirmed again.
func TestPublishPastTheBoundIsRefused(t *testing.T) {
	for _, typ := range []string{"quorum", "classic"} {
		t.Run(typ, func(t *testing.T) {
			cfg := rabbittest.MustConfig(t)
			cfg.QueueType = typ
			cfg.QueueMaxLength = 3
			p := mustPublisher(t, cfg)
			for i := range cfg.QueueMaxLength {
				if err := p.Publish(context.Background(), putOp(fmt.Sprint("k", i))); err != nil {
					t.Fatalf("publish %d of a bound of %d: %v", i+1, cfg.QueueMaxLength, err)
				}
			}
			// A quorum queue refuses publishes once it holds more than its
			// bound, so one past it gets in (RabbitMQ 3.10; a classic
			// queue, none): allow a few.
			var err error
			var start time.Time
			over := 0
			for ; over < 5 && err == nil; over++ {
				start = time.Now()
				err = p.Publish(context.Background(), putOp(fmt.Sprint("over", over)))
			}
			t.Logf("refused after %d publishes past the bound", over-1)
			if !errors.Is(err, rabbitmq.ErrNacked) || !errors.Is(err, kv.ErrUnavailable) {
				t.Fatalf("publish past the bound = %v, want ErrNacked (a kv.ErrUnavailable)", err)
			}
			if took := time.Since(start); took > cfg.PublishTimeout/2 {
				t.Errorf("the refusal took %s; want it prompt (the publish timeout is %s)", took, cfg.PublishTimeout)
			}
			rabbittest.WaitCount(t, cfg, cfg.QueueAdd, cfg.QueueMaxLength+over-1, 5*time.Second)
			waitFor(t, 5*time.Second, "a message to take", func() bool {
				_, ok := rabbittest.Get(t, cfg, cfg.QueueAdd)
				return ok
			})
			waitFor(t, 10*time.Second, "a publish under the bound to be confirmed", func() bool {
				return p.Publish(context.Background(), putOp("again")) == nil
			})
		})
	}
}

// TestMigrateQueuesBoundsAnUnboundedQueue: queues an earlier kvstack
// declared without a bound refuse the bounded declaration (the publisher
// says which argument and what to do); the migration declares them again
// with the bound and their messages, and the publisher then connects.
func TestMigrateQueuesBoundsAnUnboundedQueue(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	old := cfg
	old.QueueMaxLength, old.QueueMaxBytes = 0, 0
	rabbittest.Declare(t, old)
	rabbittest.PublishRaw(t, old, old.QueueAdd, []byte("a"), []byte("b"))

	p, err := rabbitmq.NewPublisher(cfg, rabbittest.Keys(t), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	var qerr *rabbitmq.QueueArgError
	waitFor(t, 10*time.Second, "the publisher to report the queue's arguments", func() bool {
		return errors.As(p.Ready(context.Background()), &qerr)
	})
	if qerr.Queue != cfg.QueueAdd || qerr.Arg != "x-max-length" || qerr.Have != "none" || qerr.Want != fmt.Sprint(cfg.QueueMaxLength) {
		t.Errorf("publisher's Ready: %v (%+v), want x-max-length none → %d", qerr, *qerr, cfg.QueueMaxLength)
	}

	if err := migrate(t, cfg); err != nil {
		t.Fatalf("MigrateQueues: %v", err)
	}
	rabbittest.Declare(t, cfg) // as configured now, or it fails the test
	for _, want := range []string{"a", "b"} {
		if d, ok := rabbittest.Get(t, cfg, cfg.QueueAdd); !ok || string(d.Body) != want {
			t.Fatalf("%s holds %q (ok %v), want %q: its messages, in order", cfg.QueueAdd, d.Body, ok, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatalf("the publisher did not connect once the queues were bounded: %v", err)
	}
}
