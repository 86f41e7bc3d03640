package rabbitmq

import (
	"errors"
	"fmt"
	"regexp"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Topology names the queues and the dead-letter exchange.
type Topology struct {
	AddQueue  string // puts
	DelQueue  string // deletes
	DLX       string // direct exchange that routes rejected messages to <queue>.dlq
	QueueType string // x-queue-type: "quorum" or "classic"
}

// DLQ is the name of the dead-letter queue of queue, and the routing key
// its rejected messages carry to the DLX.
func DLQ(queue string) string { return queue + ".dlq" }

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
			return amqp.Table{
				amqp.QueueTypeArg:           t.QueueType,
				"x-dead-letter-exchange":    t.DLX,
				"x-dead-letter-routing-key": DLQ(q),
			}
		}
	}
	return amqp.Table{amqp.QueueTypeArg: t.QueueType}
}

// QueueTypeError is a queue that exists with another type than
// RABBITMQ_QUEUE_TYPE: RabbitMQ cannot change a queue's type in place, and
// refuses the declaration (PRECONDITION_FAILED), so nothing can be
// published to it or consumed from it until the queue is converted.
type QueueTypeError struct {
	Queue, Have, Want string
}

func (e *QueueTypeError) Error() string {
	return fmt.Sprintf("queue %s is a %s queue but RABBITMQ_QUEUE_TYPE is %s: %s", e.Queue, e.Have, e.Want, e.Advice())
}

// Advice tells the operator what to do.
func (e *QueueTypeError) Advice() string {
	return fmt.Sprintf("run the migrations (make migrate, or bin/migrate with this environment), which convert it with its messages, "+
		"then restart; or set RABBITMQ_QUEUE_TYPE=%s", e.Have)
}

// currentType finds the type a queue has in RabbitMQ's refusal to
// redeclare it as another: "... inequivalent arg 'x-queue-type' for queue
// 'q' in vhost '/': received 'quorum' but current is 'classic'".
var currentType = regexp.MustCompile(`inequivalent arg 'x-queue-type' .*current is '(\w+)'`)

// asQueueTypeError turns RabbitMQ's refusal to redeclare queue as another
// type into a *QueueTypeError; other errors are returned as they are.
func asQueueTypeError(err error, queue, want string) error {
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
		return err
	}
	if m := currentType.FindStringSubmatch(aerr.Reason); m != nil {
		return &QueueTypeError{Queue: queue, Have: m[1], Want: want}
	}
	return err
}

// Declare creates the topology, or checks that it exists as described: the
// DLX, each work queue dead-lettering to it with routing key <queue>.dlq, and
// each DLQ bound to the DLX with that key. It is idempotent; both the
// publisher and the consumer call it on every (re)connect, so whichever comes
// up first creates everything. A queue that exists with other arguments
// fails with PRECONDITION_FAILED, which also closes ch; one of the other
// type is a *QueueTypeError (MigrateQueues converts it).
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
		return fmt.Errorf("declare queue %s: %w", queue, asQueueTypeError(err, queue, t.QueueType))
	}
	return nil
}
