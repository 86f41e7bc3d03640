package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
)

// MigrateQueues makes the topology's queues (work queues and DLQs) what
// the configuration says (RABBITMQ_QUEUE_TYPE, RABBITMQ_QUEUE_MAX_LENGTH,
// RABBITMQ_QUEUE_MAX_BYTES), then declares the whole topology. RabbitMQ
// cannot change a queue's type or arguments, so a queue declared otherwise
// is converted with its messages: moved, confirmed, into a queue
// <queue>.migrating of the new type, deleted once empty, declared again as
// configured, and given its messages back, in their order (a bound smaller
// than what it holds refuses the excess, and the migration fails saying so). A migration cut short resumes
// where it stopped on the next run: a <queue>.migrating that exists is
// emptied into its queue first.
//
// It refuses to convert a queue that has consumers: the consumers (and
// the API, whose publishes to a queue that is gone for a moment would be
// lost) must be stopped first, which is how `make up`, compose and
// Kubernetes run it, before the API and the consumer start. A broker that
// does not answer is an error wrapping kv.ErrUnavailable.
func MigrateQueues(ctx context.Context, cfg Config, log zerolog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	conn, at, err := dialAny(cfg.URLs(), cfg.TLSCAFile, 0, "kvstack migrate", 0)
	if err != nil {
		return fmt.Errorf("connect: %w: %w", kv.ErrUnavailable, err)
	}
	defer conn.Close()
	m := migrator{conn: conn, topo: cfg.Topology(), log: log.With().Str("component", "rabbitmq.migrate").Str("url", redact(cfg.URLs()[at])).Logger()}
	for _, q := range m.topo.AllQueues() {
		if err := m.queue(ctx, q); err != nil {
			return err
		}
	}
	return m.with(func(ch *amqp.Channel) error { return Declare(ch, m.topo) })
}

// ErrQueueInUse is MigrateQueues' refusal to convert a queue that has
// consumers.
var ErrQueueInUse = errors.New("queue in use")

type migrator struct {
	conn *amqp.Connection
	topo Topology
	log  zerolog.Logger
}

// migrating is where a queue's messages wait while it is converted.
func migrating(queue string) string { return queue + ".migrating" }

// queue converts one queue when it was declared otherwise, then finishes
// any conversion of it that was cut short.
func (m *migrator) queue(ctx context.Context, q string) error {
	err := m.with(func(ch *amqp.Channel) error { return declareQueue(ch, m.topo, q) })
	var qerr *QueueArgError
	switch {
	case errors.As(err, &qerr):
		if err := m.empty(ctx, q, qerr); err != nil {
			return err
		}
		if err := m.with(func(ch *amqp.Channel) error { return declareQueue(ch, m.topo, q) }); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	return m.refill(ctx, q)
}

// empty moves the messages of q, declared otherwise (why), into
// migrating(q), then deletes q, unless it has consumers.
func (m *migrator) empty(ctx context.Context, q string, why *QueueArgError) error {
	// The queue's type, when the refusal named it ("": not known).
	have := ""
	if why.Arg == amqp.QueueTypeArg {
		have = why.Have
	}
	change := fmt.Sprintf("%s %s → %s", why.Arg, why.Have, why.Want)
	tmp := migrating(q)
	if err := m.with(func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(tmp, true, false, false, false, amqp.Table{amqp.QueueTypeArg: m.topo.QueueType})
		return err
	}); err != nil {
		return fmt.Errorf("declare %s: %w", tmp, err)
	}
	for attempt := 1; ; attempt++ {
		var info amqp.Queue
		if err := m.with(func(ch *amqp.Channel) (err error) {
			info, err = ch.QueueDeclarePassive(q, true, false, false, false, nil)
			return err
		}); err != nil {
			return fmt.Errorf("inspect %s: %w", q, err)
		}
		if info.Consumers > 0 {
			return fmt.Errorf("%w: queue %s has %d consumers, and must be declared again (%s): stop the consumers and the API (make down; docker compose stop; "+
				"kubectl scale --replicas=0), then migrate again", ErrQueueInUse, q, info.Consumers, change)
		}
		moved, err := m.move(ctx, q, tmp)
		if err != nil {
			return err
		}
		// Not if a publisher added a message meanwhile: move it too.
		err = m.deleteIdle(ctx, q, have)
		if err == nil {
			m.log.Info().Str("queue", q).Str("change", change).Int("messages", moved).
				Msgf("queue %s deleted to be declared again (%s); its messages wait in %s", q, change, tmp)
			return nil
		}
		if attempt == 3 {
			return fmt.Errorf("delete %s to declare it again (%s; its messages are in %s; migrate again once nothing publishes to it): %w", q, change, tmp, err)
		}
	}
}

// refill moves the messages of migrating(q), if it exists, back into q
// and deletes it.
func (m *migrator) refill(ctx context.Context, q string) error {
	tmp := migrating(q)
	err := m.with(func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(tmp, true, false, false, false, nil)
		return err
	})
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", tmp, err)
	}
	moved, err := m.move(ctx, tmp, q)
	if err != nil {
		return err
	}
	if err := m.deleteIdle(ctx, tmp, m.topo.QueueType); err != nil {
		return fmt.Errorf("delete %s: %w", tmp, err)
	}
	m.log.Info().Str("queue", q).Str("type", m.topo.QueueType).Int("messages", moved).Msgf("queue %s is declared as configured now (%s), with its messages", q, m.topo.QueueType)
	return nil
}

// deleteIdle deletes queue q, of type typ ("" if not known), unless it
// holds messages or has consumers. Quorum queues do not implement
// queue.delete's if-empty and if-unused: for them, and a queue of a type
// not known, it looks first (nothing else publishes to a
// queue being migrated: the caller made sure of it), for a few seconds,
// since the count of consumers includes basic.gets whose ack the queue
// has not applied yet.
func (m *migrator) deleteIdle(ctx context.Context, q, typ string) error {
	return m.with(func(ch *amqp.Channel) error {
		if typ == "classic" {
			_, err := ch.QueueDelete(q, true, true, false)
			return err
		}
		for tries := 0; ; tries++ {
			info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			switch {
			case err != nil:
				return err
			case info.Messages == 0 && info.Consumers == 0:
				_, err = ch.QueueDelete(q, false, false, false)
				return err
			case tries == 50:
				return fmt.Errorf("queue %s has %d messages and %d consumers: not deleted", q, info.Messages, info.Consumers)
			}
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return ctx.Err()
			}
		}
	})
}

// moveBatch is how many messages move between two waits for confirms.
const moveBatch = 200

// move takes every message of from and publishes it, persistent, to to,
// acking each once the broker confirmed its copy: a message is never in
// neither queue (it may be in both if the migration is cut short between
// the confirm and the ack; the consumer applies a copy as the same
// operation). It goes on until the queue counts no message: a quorum
// queue's basic.get may come back empty while it still holds some.
func (m *migrator) move(ctx context.Context, from, to string) (int, error) {
	moved := 0
	err := m.with(func(ch *amqp.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return err
		}
		for idle := 0; ; {
			n, err := moveSome(ctx, ch, from, to)
			moved += n
			switch {
			case err != nil:
				return err
			case n > 0:
				idle = 0
				continue
			}
			info, err := ch.QueueDeclarePassive(from, true, false, false, false, nil)
			switch {
			case err != nil:
				return err
			case info.Messages == 0:
				return nil
			case idle == 100:
				return fmt.Errorf("%s still counts %d messages that basic.get does not return", from, info.Messages)
			}
			idle++
			if !sleepCtx(ctx, 20*time.Millisecond) {
				return ctx.Err()
			}
		}
	})
	if err != nil {
		return moved, fmt.Errorf("move the messages of %s to %s (%d moved): %w", from, to, moved, err)
	}
	return moved, nil
}

// moveSome moves up to moveBatch messages, acking each on its own once
// every copy is confirmed.
func moveSome(ctx context.Context, ch *amqp.Channel, from, to string) (int, error) {
	var tags []uint64
	var confirms []*amqp.DeferredConfirmation
	for range moveBatch {
		d, ok, err := ch.Get(from, false)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", to, false, false, copyOf(d))
		if err != nil {
			return 0, err
		}
		confirms = append(confirms, dc)
		tags = append(tags, d.DeliveryTag)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, dc := range confirms {
		if ok, err := dc.WaitContext(wctx); !ok || err != nil {
			return 0, fmt.Errorf("a copy was not confirmed (%v): nothing of this batch is acked", err)
		}
	}
	for _, tag := range tags {
		if err := ch.Ack(tag, false); err != nil {
			return 0, err
		}
	}
	return len(tags), nil
}

// copyOf is a delivery as a persistent publishing with its properties.
func copyOf(d amqp.Delivery) amqp.Publishing {
	return amqp.Publishing{
		Headers: d.Headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: amqp.Persistent, Priority: d.Priority, CorrelationId: d.CorrelationId,
		ReplyTo: d.ReplyTo, Expiration: d.Expiration, MessageId: d.MessageId, Timestamp: d.Timestamp,
		Type: d.Type, UserId: d.UserId, AppId: d.AppId, Body: d.Body,
	}
}

// with runs f on a channel of its own: an error from the broker closes
// the channel it happened on, not the next step's.
func (m *migrator) with(f func(ch *amqp.Channel) error) error {
	ch, err := m.conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	return f(ch)
}
