package rabbitmq

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/consumer"
)

// batch is the messages in hand and their delivery tags.
type batch struct {
	msgs  []consumer.Message
	spans []trace.Span // each message's CONSUMER span
	tags  []uint64
	max   uint64
}

func (b *batch) add(c *Consumer, s *source, d amqp.Delivery, base context.Context) {
	s.last = d.DeliveryTag
	b.tags = append(b.tags, d.DeliveryTag)
	b.max = max(b.max, d.DeliveryTag)
	ctx, span := c.startProcess(base, s, d)
	b.spans = append(b.spans, span)
	b.msgs = append(b.msgs, consumer.Message{Kind: s.kind, Body: d.Body, Ctx: ctx})
}

// collect waits for a first delivery, then takes more until the batch is
// full or BatchWait has passed since the first. It returns what it has when
// ctx is cancelled, and an error when the channel dies or a consumer is
// cancelled by the broker (its queue was deleted): the session then ends,
// and the broker requeues everything unacked.
func (c *Consumer) collect(ctx context.Context, l *link, base context.Context) (*batch, error) {
	b := &batch{}
	var deadline <-chan time.Time
	for len(b.msgs) < c.cfg.BatchSize {
		if ctx.Err() != nil {
			return b, nil // stopping: take nothing more
		}
		select {
		case d, ok := <-l.src[0].in:
			if !ok {
				return nil, fmt.Errorf("consumer on %s cancelled: %w", l.src[0].queue, errChannelClosed)
			}
			b.add(c, l.src[0], d, base)
		case d, ok := <-l.src[1].in:
			if !ok {
				return nil, fmt.Errorf("consumer on %s cancelled: %w", l.src[1].queue, errChannelClosed)
			}
			b.add(c, l.src[1], d, base)
		case <-deadline:
			return b, nil
		case <-ctx.Done():
			return b, nil
		case e := <-l.closed:
			return nil, closedErr(e)
		}
		if deadline == nil {
			t := time.NewTimer(c.cfg.BatchWait)
			defer t.Stop()
			deadline = t.C
		}
	}
	return b, nil
}

// contiguous reports whether every tag up to the batch's highest is in the
// batch or already settled, so that a multiple-ack covers nothing else.
func (l *link) contiguous(b *batch) bool {
	n := uint64(len(b.tags))
	for t := range l.done {
		if t <= b.max {
			n++
		}
	}
	return b.max == l.settled+n
}

// markSettled records the batch's tags as settled and advances the prefix.
func (l *link) markSettled(b *batch) {
	for _, t := range b.tags {
		if t == l.settled+1 {
			l.settled = t
		} else {
			l.done[t] = struct{}{}
		}
	}
	for {
		if _, ok := l.done[l.settled+1]; !ok {
			return
		}
		delete(l.done, l.settled+1)
		l.settled++
	}
}

// fillGaps completes the batch with the deliveries that the broker sent
// before its highest tag but that still wait in the other consumer's
// buffer, so that one multiple-ack can settle it. Tags increase within each
// consumer, so the lowest missing tag is always the next delivery of the
// consumer whose last tag is lower; each receive fills one gap.
func (l *link) fillGaps(b *batch, c *Consumer, base context.Context) error {
	for !l.contiguous(b) {
		s := l.src[0]
		if l.src[1].last < s.last {
			s = l.src[1]
		}
		select {
		case d, ok := <-s.in:
			if !ok {
				return nil // consumer cancelled while stopping: settle acks one by one
			}
			if d.DeliveryTag > b.max {
				// Not the gap we expected (should not happen): keep it,
				// and let settle fall back to single acks.
				b.add(c, s, d, base)
				return nil
			}
			b.add(c, s, d, base)
		case e := <-l.closed:
			return closedErr(e)
		case <-time.After(time.Second):
			return nil // same fallback; never wait on a guess
		}
	}
	return nil
}

// settle dead-letters the messages so judged (the queue's DLX routes them to
// its DLQ), then acks the rest: one multiple-ack on the highest acked tag
// when the batch is contiguous, one ack per message otherwise.
func (l *link) settle(b *batch, verdicts []consumer.Verdict) error {
	var ackTag uint64
	var acks []uint64 // for the single-ack fallback
	for i, v := range verdicts {
		tag := b.tags[i]
		if v == consumer.DeadLetter {
			if err := l.ch.Nack(tag, false, false); err != nil {
				return fmt.Errorf("dead-letter: %w", err)
			}
			continue
		}
		ackTag = max(ackTag, tag)
		acks = append(acks, tag)
	}
	if l.contiguous(b) {
		if ackTag > 0 {
			if err := l.ch.Ack(ackTag, true); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	} else {
		for _, tag := range acks {
			if err := l.ch.Ack(tag, false); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
	l.markSettled(b)
	return nil
}
