package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
)

// Consumer feeds batches of deliveries from both queues to a Handler and
// acks or dead-letters them according to its verdicts.
type Consumer struct {
	cfg    Config
	topo   Topology
	h      consumer.Handler
	log    zerolog.Logger
	server []attribute.KeyValue // server.address and port, for spans

	// waits between handler retries, and between reconnects
	retryMin, retryMax time.Duration
}

// NewConsumer builds a consumer runner; Run starts it.
func NewConsumer(cfg Config, h consumer.Handler, log zerolog.Logger) *Consumer {
	c := &Consumer{
		cfg:      cfg,
		topo:     cfg.Topology(),
		h:        h,
		log:      log.With().Str("component", "rabbitmq.consumer").Logger(),
		retryMin: 100 * time.Millisecond,
		retryMax: 5 * time.Second,
		server:   serverAttrs(cfg.URL),
	}
	return c
}

// Run consumes until ctx is cancelled, reconnecting (with backoff) whenever
// the connection or channel is lost. On cancel it stops taking deliveries,
// finishes and acks the batch in hand within ShutdownGrace, closes, and
// returns nil. It returns an error only for an invalid configuration.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.cfg.Validate(); err != nil {
		return err
	}
	b := newBackoff(c.retryMin, c.retryMax)
	for {
		err := c.session(ctx, b)
		if ctx.Err() != nil {
			c.log.Info().Msg("rabbitmq consumer stopped")
			return nil
		}
		wait := b.next()
		c.log.Warn().Err(err).Dur("retry_in", wait).Str("url", c.cfg.RedactedURL()).Msg("rabbitmq consumer not connected; retrying")
		if !sleepCtx(ctx, wait) {
			return nil
		}
	}
}

// source is one consumed queue.
type source struct {
	queue string
	kind  kv.Kind
	tag   string
	in    <-chan amqp.Delivery
	last  uint64 // highest delivery tag received from in
}

// link is one live channel with its two consumers.
type link struct {
	ch      *amqp.Channel
	closed  <-chan *amqp.Error // fires when the channel dies
	src     [2]*source
	settled uint64              // every tag ≤ settled is acked or dead-lettered
	done    map[uint64]struct{} // tags above settled that are settled too
}

// session runs one connection until it fails or ctx is cancelled.
func (c *Consumer) session(ctx context.Context, b *backoff) error {
	conn, err := dial(c.cfg.URL, "kvstack consumer", 0)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	l := &link{ch: ch, closed: ch.NotifyClose(make(chan *amqp.Error, 1)), done: map[uint64]struct{}{}}
	if err := Declare(ch, c.topo); err != nil {
		return err
	}
	if err := ch.Qos(c.cfg.PrefetchCount(), 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	// One channel for both queues: delivery tags are per channel, so one
	// multiple-ack settles a batch drawn from both.
	id := uuid.NewString()
	for i, q := range []struct {
		queue string
		kind  kv.Kind
	}{{c.topo.AddQueue, kv.KindPut}, {c.topo.DelQueue, kv.KindDelete}} {
		s := &source{queue: q.queue, kind: q.kind, tag: "kvstack-" + id + "-" + string(q.kind)}
		if s.in, err = ch.Consume(s.queue, s.tag, false, false, false, false, nil); err != nil {
			return fmt.Errorf("consume %s: %w", s.queue, err)
		}
		l.src[i] = s
	}
	b.reset()
	c.log.Info().Str("url", c.cfg.RedactedURL()).Strs("queues", c.topo.Queues()).
		Int("prefetch", c.cfg.PrefetchCount()).Int("batch_size", c.cfg.BatchSize).Msg("rabbitmq consumer connected")
	return c.consume(ctx, l)
}

// consume runs batches until ctx is done or the channel dies.
func (c *Consumer) consume(ctx context.Context, l *link) error {
	// Handling runs under work, which outlives ctx by ShutdownGrace so that
	// the batch in hand can finish, and ends with the session.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		sleep(work.Done(), c.cfg.ShutdownGrace)
		cancelWork()
	})
	defer stopGrace()

	base := context.WithoutCancel(ctx)
	for {
		b, err := c.collect(ctx, l, base)
		if err != nil {
			return err
		}
		stopping := ctx.Err() != nil
		if stopping {
			l.cancelConsumers()
		}
		if len(b.msgs) > 0 {
			verdicts, err := c.runBatch(ctx, work, l, b, base)
			b.endSpans(verdicts, err)
			if err != nil {
				return err
			}
		}
		if stopping {
			return nil
		}
	}
}

// runBatch completes, handles and settles one batch. An error leaves it
// unsettled: the broker redelivers it on the next session.
func (c *Consumer) runBatch(ctx, work context.Context, l *link, b *batch, base context.Context) ([]consumer.Verdict, error) {
	if err := l.fillGaps(b, c, base); err != nil {
		return nil, err
	}
	verdicts, err := c.handle(ctx, work, l, b.msgs)
	if err != nil {
		return nil, err
	}
	return verdicts, l.settle(b, verdicts)
}

// cancelConsumers asks the broker to stop delivering; what is already
// prefetched stays unacked and is requeued when the channel closes.
func (l *link) cancelConsumers() {
	for _, s := range l.src {
		_ = l.ch.Cancel(s.tag, false)
	}
}

var errChannelClosed = errors.New("channel closed")

func closedErr(e *amqp.Error) error {
	if e == nil {
		return errChannelClosed
	}
	return fmt.Errorf("%w: %w", errChannelClosed, e)
}
