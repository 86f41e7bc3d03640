package rabbitmq

import (
	"errors"
	"fmt"
	"regexp"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/kv"
)

// Topology names the queues and the dead-letter exchange, and how the
// work queues are declared.
type Topology struct {
	AddQueue  string // puts
	DelQueue  string // deletes
	DLX       string // direct exchange that routes rejected messages to <queue>.dlq
	QueueType string // x-queue-type: "quorum" or "classic"
	// MaxLength and MaxBytes bound each work queue (x-max-length,
	// x-max-length-bytes; 0: no bound). A publish past either is refused
	// (x-overflow reject-publish): the broker nacks it, and the API
	// answers 503, instead of filling the broker's memory and disk until
	// its alarm blocks every publisher. The DLQs are not bounded: a
	// dead-lettered message must not be lost.
	MaxLength int
	MaxBytes  int64
}

// DLQ is the name of the dead-letter queue of queue, and the routing key
// its rejected messages carry to the DLX.
func DLQ(queue string) string { return queue + ".dlq" }

// QueueOf is the work queue of the operations of kind k: puts go to
// AddQueue, deletes to DelQueue. It is the one map from a kind to its
// queue: the publisher sends by it, the source tells a delivery's kind by
// it, and the API's publish metrics are labelled by it.
func (t Topology) QueueOf(k kv.Kind) (string, error) {
	switch k {
	case kv.KindPut:
		return t.AddQueue, nil
	case kv.KindDelete:
		return t.DelQueue, nil
	}
	return "", fmt.Errorf("unknown kind %q: %w", k, kv.ErrInvalid)
}

// Queues returns the two work queues.
func (t Topology) Queues() []string { return []string{t.AddQueue, t.DelQueue} }

// AllQueues returns each work queue followed by its DLQ.
func (t Topology) AllQueues() []string {
	return []string{t.AddQueue, DLQ(t.AddQueue), t.DelQueue, DLQ(t.DelQueue)}
}

// args are the arguments a queue of the topology is declared with.
func (t Topology) args(queue string) amqp.Table {
	for _, q := range t.Queues() {
		if queue == q {
			args := amqp.Table{
				amqp.QueueTypeArg:           t.QueueType,
				"x-dead-letter-exchange":    t.DLX,
				"x-dead-letter-routing-key": DLQ(q),
			}
			if t.MaxLength > 0 {
				args[amqp.QueueMaxLenArg] = int64(t.MaxLength)
			}
			if t.MaxBytes > 0 {
				args[amqp.QueueMaxLenBytesArg] = t.MaxBytes
			}
			if t.MaxLength > 0 || t.MaxBytes > 0 {
				args[amqp.QueueOverflowArg] = amqp.QueueOverflowRejectPublish
			}
			return args
		}
	}
	return amqp.Table{amqp.QueueTypeArg: t.QueueType}
}

// QueueArgError is a queue that exists with another value of one of its
// arguments (its type, its bounds) than the configuration's: RabbitMQ
// cannot change them in place, and refuses the declaration
// (PRECONDITION_FAILED), so nothing can be published to the queue or
// consumed from it until it is declared again (MigrateQueues does, with
// its messages).
type QueueArgError struct {
	Queue string
	Arg   string // x-queue-type, x-max-length, …
	Have  string // the queue's value, "none" when it has none
	Want  string // the configuration's, "none" when it sets none
}

func (e *QueueArgError) Error() string {
	return fmt.Sprintf("queue %s has %s %s but the configuration (RABBITMQ_QUEUE_TYPE, RABBITMQ_QUEUE_MAX_LENGTH, RABBITMQ_QUEUE_MAX_BYTES) wants %s: %s",
		e.Queue, e.Arg, e.Have, e.Want, e.Advice())
}

// Advice tells the operator what to do.
func (e *QueueArgError) Advice() string {
	return "run the migrations (make migrate, or bin/migrate with this environment), which declare it again with its messages, " +
		"then restart; or configure what the queue has"
}

// inequivalent is RabbitMQ's refusal to redeclare a queue with another
// argument: "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/':
// received 'quorum' but current is 'classic'", or "… received the value
// '1000' of type 'signedint' but current is none".
var inequivalent = regexp.MustCompile(`inequivalent arg '([\w-]+)' for queue .*: received (.*) but current is (.*)$`)

// argValue is the value in one side of that message.
var argValue = regexp.MustCompile(`'([^']*)'`)

func argOf(s string) string {
	if m := argValue.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return s
}

// asQueueArgError turns RabbitMQ's refusal to redeclare queue with other
// arguments into a *QueueArgError; other errors are returned as they are.
func asQueueArgError(err error, queue string) error {
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
		return err
	}
	if m := inequivalent.FindStringSubmatch(aerr.Reason); m != nil {
		return &QueueArgError{Queue: queue, Arg: m[1], Want: argOf(m[2]), Have: argOf(m[3])}
	}
	return err
}

// Declare creates the topology, or checks that it exists as described: the
// DLX, each work queue dead-lettering to it with routing key <queue>.dlq, and
// each DLQ bound to the DLX with that key. It is idempotent; both the
// publisher and the consumer call it on every (re)connect, so whichever comes
// up first creates everything. A queue that exists with other arguments
// fails with PRECONDITION_FAILED, which also closes ch; the error is a
// *QueueArgError (MigrateQueues declares it again).
func Declare(ch *amqp.Channel, t Topology) error {
	if err := ch.ExchangeDeclare(t.DLX, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", t.DLX, err)
	}
	for _, q := range t.AllQueues() {
		if err := declareQueue(ch, t, q); err != nil {
			return err
		}
	}
	for _, q := range t.Queues() {
		dlq := DLQ(q)
		if err := ch.QueueBind(dlq, dlq, t.DLX, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", dlq, t.DLX, err)
		}
	}
	return nil
}

// declareQueue declares one queue of the topology.
func declareQueue(ch *amqp.Channel, t Topology, queue string) error {
	if _, err := ch.QueueDeclare(queue, true, false, false, false, t.args(queue)); err != nil {
		return fmt.Errorf("declare queue %s: %w", queue, asQueueArgError(err, queue))
	}
	return nil
}

// DeclareOrCheck is Declare on a channel of its own, for the API and the
// consumer. Where their users may not configure (least privilege: the
// API's may only publish, the consumer's only consume), the broker
// refuses the declaration (ACCESS_REFUSED) and DeclareOrCheck checks,
// on a new channel, that the exchange and every queue exist (Check):
// migrate, whose user may, declared them. A check does not compare the
// queues' arguments; migrate does.
func DeclareOrCheck(conn *amqp.Connection, t Topology) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	err = Declare(ch, t)
	ch.Close()
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.AccessRefused {
		return err
	}
	if ch, err = conn.Channel(); err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	return Check(ch, t)
}

// Check tells whether the topology exists: the DLX and each queue
// (passive declarations, which need no permission). A missing one is an
// error that says to run the migrations.
func Check(ch *amqp.Channel, t Topology) error {
	if err := ch.ExchangeDeclarePassive(t.DLX, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange %s (run the migrations, which declare it): %w", t.DLX, err)
	}
	for _, q := range t.AllQueues() {
		if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
			return fmt.Errorf("queue %s (run the migrations, which declare it): %w", q, err)
		}
	}
	return nil
}
