package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// classicTopology declares cfg's topology as classic queues (what an
// earlier kvstack left) and returns the quorum configuration of the same
// names.
func classicTopology(t *testing.T) (classic, quorum rabbitmq.Config) {
	t.Helper()
	quorum = rabbittest.MustConfig(t)
	quorum.QueueType = "quorum"
	classic = quorum
	classic.QueueType = "classic"
	rabbittest.Declare(t, classic)
	return classic, quorum
}

// queueType is the x-queue-type queue has: the one it can be declared with.
func queueType(t *testing.T, cfg rabbitmq.Config, queue string) string {
	t.Helper()
	for _, typ := range []string{"quorum", "classic"} {
		c := cfg
		c.QueueType = typ
		conn := rabbittest.MustDial(t, c)
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		err = rabbitmq.Declare(ch, c.Topology())
		conn.Close()
		var qerr *rabbitmq.QueueArgError
		switch {
		case err == nil:
			return typ
		case !errors.As(err, &qerr):
			t.Fatalf("declare %s: %v", queue, err)
		}
	}
	t.Fatalf("%s is neither quorum nor classic", queue)
	return ""
}

func migrate(t *testing.T, cfg rabbitmq.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rabbitmq.MigrateQueues(ctx, cfg, testLog(t))
}

// TestMigrateQueuesConvertsWithTheMessages: classic queues holding
// messages, the work queue's and its DLQ's, become quorum queues holding
// the same messages in the same order with their properties, and nothing
// is left behind; a second run changes nothing.
func TestMigrateQueuesConvertsWithTheMessages(t *testing.T) {
	classic, cfg := classicTopology(t)
	p := mustPublisher(t, classic)
	var ops []kv.Op
	for i := range 250 { // more than one batch of the move
		op := kv.Op{Kind: kv.KindPut, Key: fmt.Sprintf("k%03d", i), Value: "v", Version: kv.NewVersion(time.Now())}
		if err := p.Publish(context.Background(), op); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
	}
	_ = p.Close()
	rabbittest.PublishRaw(t, classic, rabbitmq.DLQ(cfg.QueueDel), []byte("dead"))

	if err := migrate(t, cfg); err != nil {
		t.Fatalf("MigrateQueues: %v", err)
	}
	for _, q := range cfg.Topology().AllQueues() {
		if got := queueType(t, cfg, q); got != "quorum" {
			t.Errorf("%s is %s after the migration, want quorum", q, got)
		}
	}
	rabbittest.WaitCount(t, cfg, cfg.QueueAdd, len(ops), 10*time.Second)
	if err := migrate(t, cfg); err != nil {
		t.Errorf("MigrateQueues again: %v", err)
	}
	conn := rabbittest.MustDial(t, cfg)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(cfg.QueueAdd, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		var d amqp.Delivery
		select {
		case d = <-deliveries:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d messages after the migration", i, len(ops))
		}
		if d.MessageId != op.Version.OpID.String() || d.DeliveryMode != amqp.Persistent || d.Type != string(kv.KindPut) {
			t.Fatalf("message %d after the migration: id %s, mode %d, type %q; want %s, persistent, put (in the order published)",
				i, d.MessageId, d.DeliveryMode, d.Type, op.Version.OpID)
		}
	}
	if d, ok := rabbittest.Get(t, cfg, rabbitmq.DLQ(cfg.QueueDel)); !ok || string(d.Body) != "dead" {
		t.Errorf("%s after the migration holds %q (ok %v), want its dead letter", rabbitmq.DLQ(cfg.QueueDel), d.Body, ok)
	}
	for _, q := range cfg.Topology().AllQueues() {
		ch, _ := conn.Channel()
		if _, err := ch.QueueDeclarePassive(q+".migrating", true, false, false, false, nil); err == nil {
			t.Errorf("%s.migrating left behind", q)
			ch.Close()
		}
	}
}

// TestMigrateQueuesRefusesAConsumedQueue: a classic queue with a consumer
// stays as it is, with its messages, and the error says what to do.
func TestMigrateQueuesRefusesAConsumedQueue(t *testing.T) {
	classic, cfg := classicTopology(t)
	rabbittest.PublishRaw(t, classic, classic.QueueAdd, []byte("kept"))
	conn := rabbittest.MustDial(t, classic)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Consume(classic.QueueAdd, "old-consumer", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	err = migrate(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "consumers") || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("MigrateQueues with a consumer on %s = %v, want a refusal saying to stop the consumers", classic.QueueAdd, err)
	}
	t.Logf("refused: %v", err)
	conn.Close() // the unacked message goes back
	if got := queueType(t, cfg, cfg.QueueAdd); got != "classic" {
		t.Errorf("%s is %s after a refused migration, want it left classic", cfg.QueueAdd, got)
	}
	rabbittest.WaitCount(t, classic, classic.QueueAdd, 1, 10*time.Second)
}

// TestMigrateQueuesResumes: a migration cut short after the queue was
// deleted leaves the messages in <queue>.migrating; the next run puts
// them back into the (new) queue.
func TestMigrateQueuesResumes(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	cfg.QueueType = "quorum"
	tmp := cfg.QueueAdd + ".migrating"
	conn := rabbittest.MustDial(t, cfg)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(tmp, true, false, false, false, amqp.Table{amqp.QueueTypeArg: "quorum"}); err != nil {
		t.Fatal(err)
	}
	rabbittest.PublishRaw(t, cfg, tmp, []byte("a"), []byte("b"))
	if err := migrate(t, cfg); err != nil {
		t.Fatalf("MigrateQueues: %v", err)
	}
	for _, want := range []string{"a", "b"} {
		if d, ok := rabbittest.Get(t, cfg, cfg.QueueAdd); !ok || string(d.Body) != want {
			t.Fatalf("%s holds %q (ok %v), want %q: the interrupted migration's messages in order", cfg.QueueAdd, d.Body, ok, want)
		}
	}
	if _, err := ch.QueueDeclarePassive(tmp, true, false, false, false, nil); err == nil {
		t.Errorf("%s left behind", tmp)
	}
}

// TestQueueOfTheOtherType: the publisher and the consumer that meet a
// classic queue where they want a quorum one say what is wrong and what to
// do (Ready, the log), and the publisher recovers by itself once the queue
// is migrated.
func TestQueueOfTheOtherType(t *testing.T) {
	_, cfg := classicTopology(t)
	p, err := rabbitmq.NewPublisher(cfg, rabbittest.Keys(t), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	var qerr *rabbitmq.QueueArgError
	waitFor(t, 10*time.Second, "the publisher to report the queue's type", func() bool {
		return errors.As(p.Ready(context.Background()), &qerr)
	})
	if qerr.Queue != cfg.QueueAdd || qerr.Have != "classic" || qerr.Want != "quorum" || !strings.Contains(qerr.Error(), "make migrate") {
		t.Errorf("publisher's Ready: %v (%+v)", qerr, *qerr)
	}
	if err := p.Ready(context.Background()); !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Ready = %v, want it to wrap kv.ErrUnavailable (a 503)", err)
	}

	src, err := rabbitmq.NewSource(cfg, 10, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Open(context.Background()); !errors.As(err, &qerr) {
		t.Errorf("Source.Open = %v, want a *QueueTypeError", err)
	}
	if err := src.Ready(context.Background()); !errors.As(err, &qerr) {
		t.Errorf("Source.Ready = %v, want a *QueueTypeError", err)
	}

	if err := migrate(t, cfg); err != nil {
		t.Fatalf("MigrateQueues: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatalf("the publisher did not connect once the queues were migrated: %v", err)
	}
	s, err := src.Open(context.Background())
	if err != nil {
		t.Fatalf("Source.Open once migrated: %v", err)
	}
	if err := src.Ready(context.Background()); err != nil {
		t.Errorf("Source.Ready once migrated = %v", err)
	}
	s.Close()
	if err := src.Ready(context.Background()); !errors.Is(err, rabbitmq.ErrNotConnected) {
		t.Errorf("Source.Ready once its session closed = %v, want ErrNotConnected", err)
	}
	var _ consumer.Source = src
}
