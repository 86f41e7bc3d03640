// Package rabbittest gives tests an isolated RabbitMQ topology on the real
// broker, and the small tools to look into it.
package rabbittest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/msgsig"
	"github.com/kvstack/kvstack/internal/rabbitmq"
)

// URL is the broker the tests use: $RABBITMQ_URL, or the local default.
func URL() string {
	if u := os.Getenv("RABBITMQ_URL"); u != "" {
		return u
	}
	return rabbitmq.DefaultConfig().URL
}

// MustConfig returns the default configuration with queue and exchange
// names unique to this test (test.<random>.add_key, …), short timeouts, and
// a cleanup that deletes them. It fails the test when RabbitMQ does not
// answer.
func MustConfig(tb testing.TB) rabbitmq.Config {
	tb.Helper()
	return MustConfigAt(tb, URL())
}

// MustConfigAt is MustConfig on the broker (or the nodes, comma-separated)
// of url: a private one, in a test that may run in parallel (t.Setenv
// may not).
func MustConfigAt(tb testing.TB, url string) rabbitmq.Config {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs RabbitMQ; not run with -short (make test runs it)")
	}
	cfg := rabbitmq.DefaultConfig()
	cfg.URL = url
	conn := MustDial(tb, cfg)
	conn.Close()

	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "test." + hex.EncodeToString(b[:]) + "."
	cfg.QueueAdd = prefix + "add_key"
	cfg.QueueDel = prefix + "del_key"
	cfg.DLX = prefix + "dlx"
	tb.Cleanup(func() { deleteTopology(tb, cfg) })
	return cfg
}

// MustDial opens a connection to cfg's broker (the first of its nodes
// that answers) or fails the test naming them.
func MustDial(tb testing.TB, cfg rabbitmq.Config) *amqp.Connection {
	tb.Helper()
	conn, err := dial(cfg)
	if err != nil {
		tb.Fatalf("RabbitMQ unreachable at %s: %v (start it, or set RABBITMQ_URL)", cfg.RedactedURL(), err)
	}
	return conn
}

func dial(cfg rabbitmq.Config) (*amqp.Connection, error) {
	var errs []error
	for _, u := range cfg.URLs() {
		conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func deleteTopology(tb testing.TB, cfg rabbitmq.Config) {
	conn, err := dial(cfg)
	if err != nil {
		tb.Errorf("rabbittest cleanup: RabbitMQ unreachable at %s: %v", cfg.RedactedURL(), err)
		return
	}
	defer conn.Close()
	for _, q := range cfg.Topology().Queues() {
		// and what an interrupted queue migration leaves
		for _, name := range []string{q, rabbitmq.DLQ(q), q + ".migrating", rabbitmq.DLQ(q) + ".migrating"} {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(name, false, false, false)
				ch.Close()
			}
		}
	}
	if ch, err := conn.Channel(); err == nil {
		_ = ch.ExchangeDelete(cfg.DLX, false, false)
		ch.Close()
	}
}

// withChannel runs f on a fresh channel of a fresh connection.
func withChannel(tb testing.TB, cfg rabbitmq.Config, f func(ch *amqp.Channel)) {
	tb.Helper()
	conn := MustDial(tb, cfg)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatalf("rabbittest: open channel: %v", err)
	}
	defer ch.Close()
	f(ch)
}

// Declare declares cfg's topology, as the publisher and consumer would.
func Declare(tb testing.TB, cfg rabbitmq.Config) {
	tb.Helper()
	withChannel(tb, cfg, func(ch *amqp.Channel) {
		if err := rabbitmq.Declare(ch, cfg.Topology()); err != nil {
			tb.Fatalf("rabbittest: declare: %v", err)
		}
	})
}

// Count returns the number of ready messages in queue.
func Count(tb testing.TB, cfg rabbitmq.Config, queue string) int {
	tb.Helper()
	var n int
	withChannel(tb, cfg, func(ch *amqp.Channel) {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			tb.Fatalf("rabbittest: count %s: %v", queue, err)
		}
		n = q.Messages
	})
	return n
}

// WaitCount polls until queue holds want ready messages, failing the test
// after timeout.
func WaitCount(tb testing.TB, cfg rabbitmq.Config, queue string, want int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := Count(tb, cfg, queue)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("queue %s holds %d ready messages after %s, want %d", queue, got, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Get takes one message from queue (auto-acked); ok is false when the queue
// is empty.
func Get(tb testing.TB, cfg rabbitmq.Config, queue string) (d amqp.Delivery, ok bool) {
	tb.Helper()
	withChannel(tb, cfg, func(ch *amqp.Channel) {
		var err error
		d, ok, err = ch.Get(queue, true)
		if err != nil {
			tb.Fatalf("rabbittest: get %s: %v", queue, err)
		}
	})
	return d, ok
}

// PublishRaw publishes each body, persistent and unsigned, to queue
// through the default exchange, and waits for the broker's confirms.
func PublishRaw(tb testing.TB, cfg rabbitmq.Config, queue string, bodies ...[]byte) {
	tb.Helper()
	msgs := make([]amqp.Publishing, len(bodies))
	for i, body := range bodies {
		msgs[i] = amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}
	}
	Publish(tb, cfg, queue, msgs...)
}

// Publish publishes each message to queue through the default exchange,
// and waits for the broker's confirms.
func Publish(tb testing.TB, cfg rabbitmq.Config, queue string, msgs ...amqp.Publishing) {
	tb.Helper()
	withChannel(tb, cfg, func(ch *amqp.Channel) {
		if err := ch.Confirm(false); err != nil {
			tb.Fatalf("rabbittest: confirm mode: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var dcs []*amqp.DeferredConfirmation
		for _, msg := range msgs {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
			if err != nil {
				tb.Fatalf("rabbittest: publish to %s: %v", queue, err)
			}
			dcs = append(dcs, dc)
		}
		for _, dc := range dcs {
			if ok, err := dc.WaitContext(ctx); !ok || err != nil {
				tb.Fatalf("rabbittest: publish to %s: not confirmed (%v)", queue, err)
			}
		}
	})
}

// Keys is a message signing key of the test's own.
func Keys(tb testing.TB) *msgsig.Keys {
	tb.Helper()
	keys, err := msgsig.ParseKeys(rand.Text() + rand.Text())
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}
