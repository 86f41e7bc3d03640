// Package consumer applies queued operations: it decodes a batch of
// messages, keeps the newest operation per key, applies the winners to the
// store in one transaction (last writer wins), then brings the cache in line,
// and says for each message whether to ack it or dead-letter it. It knows
// nothing of AMQP: the rabbitmq package feeds it and acts on its verdicts.
package consumer

import (
	"context"

	"github.com/kvstack/kvstack/internal/kv"
)

// Message is one delivery, stripped of its transport.
type Message struct {
	Kind kv.Kind
	Body []byte
	// Ctx carries the message's own trace context (extracted from its
	// headers); never nil.
	Ctx context.Context
}

// Verdict is what to do with a message once its batch is handled.
type Verdict int

const (
	// Ack: the message's effect is committed (or it was stale).
	Ack Verdict = iota
	// DeadLetter: the message can never be applied; it goes to the
	// dead-letter queue.
	DeadLetter
)

// Handler handles one batch. It returns one verdict per message, in order.
// An error means nothing was decided (a dependency is down): the caller keeps
// the batch, waits and calls again; it neither acks nor requeues.
type Handler interface {
	Handle(ctx context.Context, batch []Message) ([]Verdict, error)
}
