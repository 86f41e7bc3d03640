package consumer

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"

	"github.com/kvstack/kvstack/internal/kv"
)

// Source connects to the broker that holds the queued operations: RabbitMQ
// in production (rabbitmq.Source).
type Source interface {
	// Open connects and starts delivering from every queue.
	Open(ctx context.Context) (Session, error)
}

// Session is one connection's deliveries, from every queue, each queue's in
// the order the broker sent them.
type Session interface {
	// Deliveries yields the messages. It is never closed: watch Done.
	Deliveries() <-chan Delivery
	// Done is closed once the session is lost (connection or channel
	// closed, a queue deleted); Err then says why. What was delivered and
	// not settled goes back to the queue.
	Done() <-chan struct{}
	Err() error
	// Settle dead-letters the deliveries whose outcome is DeadLettered and
	// acks the rest. Deliveries must be settled in the order of each
	// queue, every one of them once: Settle may ack up to the highest in
	// one go.
	Settle(batch []Delivery, outcomes []kv.Outcome) error
	// Stop asks the broker to stop delivering; what it already sent and is
	// not settled goes back to the queue at Close.
	Stop()
	Close() error
}

// Delivery is one message as the Source received it.
type Delivery struct {
	Queue string
	Kind  kv.Kind
	Body  []byte
	// Tag is the session's handle for settling the delivery; it grows
	// within a queue.
	Tag uint64
	// Header carries the producer's trace context and the message's
	// signature (msgsig).
	Header propagation.TextMapCarrier
	// Attrs describe the message on its span, as the messaging semantic
	// conventions of the Source's system ask.
	Attrs []attribute.KeyValue
}

// Message is what the Handler gets of a delivery.
type Message struct {
	Queue string
	Kind  kv.Kind
	Body  []byte
	// WrittenBy is the message's kv.WriterHeader: who asked for it.
	WrittenBy string
	// KeyID and Signature are the msgsig headers, "" when absent.
	KeyID, Signature string
	// Ctx holds the message's CONSUMER span; never nil.
	Ctx context.Context
}

// Result is what became of one message.
type Result struct {
	Outcome kv.Outcome
	// Op is the decoded operation; the zero Op when the message could not
	// be decoded.
	Op kv.Op
	// Reason says why a message was dead-lettered (one of the Reason
	// constants); "" otherwise.
	Reason string
}

// Handler applies one batch and says what became of each message, in
// order. An error wrapping kv.ErrInvalid means some message can never be
// applied: the Runner then handles the messages one at a time to find it.
// Any other error means a dependency is down and nothing was decided: the
// Runner keeps the batch, waits, and calls again.
type Handler interface {
	Handle(ctx context.Context, batch []Message) ([]Result, error)
}
