package rabbitmq

import (
	"fmt"

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

// Declare creates the topology, or checks that it exists as described: the
// DLX, each work queue dead-lettering to it with routing key <queue>.dlq, and
// each DLQ bound to the DLX with that key. It is idempotent; both the
// publisher and the consumer call it on every (re)connect, so whichever comes
// up first creates everything. A queue that exists with other arguments
// fails with PRECONDITION_FAILED, which also closes ch.
func Declare(ch *amqp.Channel, t Topology) error {
	if err := ch.ExchangeDeclare(t.DLX, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", t.DLX, err)
	}
	for _, q := range t.Queues() {
		dlq := DLQ(q)
		args := amqp.Table{
			amqp.QueueTypeArg:           t.QueueType,
			"x-dead-letter-exchange":    t.DLX,
			"x-dead-letter-routing-key": dlq,
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
			return fmt.Errorf("declare queue %s: %w", q, err)
		}
		if _, err := ch.QueueDeclare(dlq, true, false, false, false, amqp.Table{amqp.QueueTypeArg: t.QueueType}); err != nil {
			return fmt.Errorf("declare queue %s: %w", dlq, err)
		}
		if err := ch.QueueBind(dlq, dlq, t.DLX, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", dlq, t.DLX, err)
		}
	}
	return nil
}
