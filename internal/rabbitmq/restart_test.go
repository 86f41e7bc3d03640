package rabbitmq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// TestDisruptiveBrokerRestart stops and restarts a private RabbitMQ node
// this package started (never the shared broker): while it is down,
// publishes fail fast with kv.ErrUnavailable; once it is back, the same
// publisher and the same consumer runner carry on without anyone
// restarting them.
func TestDisruptiveBrokerRestart(t *testing.T) {
	t.Parallel() // with TestCluster: each waits on its own nodes
	cfg := rabbittest.MustConfigAt(t, privateBroker.URL(t))
	p := mustPublisher(t, cfg)

	handled := make(chan string, 100)
	startRunner(t, cfg, handlerFunc(func(_ context.Context, b []consumer.Message) ([]consumer.Result, error) {
		for _, m := range b {
			op, err := kv.DecodeMessage(m.Kind, m.Body, kv.DefaultLimits())
			if err == nil {
				handled <- op.Key
			}
		}
		return make([]consumer.Result, len(b)), nil
	}))

	publish := func(key string) error {
		return p.Publish(context.Background(), kv.Op{Kind: kv.KindPut, Key: key, Value: "v", Version: kv.NewVersion(time.Now())})
	}
	awaitHandled := func(key string, timeout time.Duration) {
		t.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case k := <-handled:
				if k == key {
					return
				}
			case <-deadline:
				t.Fatalf("consumer did not handle %q within %s", key, timeout)
			}
		}
	}
	if err := publish("before"); err != nil {
		t.Fatalf("Publish before the restart: %v", err)
	}
	awaitHandled("before", 10*time.Second)

	start := privateBroker.Stop(t)
	began := time.Now()
	err := publish("during")
	took := time.Since(began)
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Publish with the broker stopped = %v, want kv.ErrUnavailable", err)
	}
	if took > 3*time.Second {
		t.Errorf("Publish with the broker stopped took %s, want well under 3s", took)
	}
	t.Logf("Publish with the broker stopped failed in %s: %v", took, err)
	if err := p.Ready(context.Background()); !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Ready with the broker stopped = %v, want kv.ErrUnavailable", err)
	}

	start()
	restarted := time.Now()
	waitFor(t, 30*time.Second, "the publisher to heal", func() bool { return publish("after") == nil })
	t.Logf("publisher healed %s after the node's restart", time.Since(restarted).Round(time.Millisecond))
	awaitHandled("after", 30*time.Second)
	t.Logf("consumer resumed %s after the node's restart", time.Since(restarted).Round(time.Millisecond))
}
