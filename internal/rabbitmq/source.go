package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
)

// Source is the consumer's side of RabbitMQ (a consumer.Source): each
// session is one connection with one channel per queue. Delivery tags are
// per channel, so a channel's deliveries are contiguous by construction:
// once a batch is handled, one multiple-ack per queue settles everything
// up to its highest tag, with no bookkeeping of what another queue sent in
// between.
type Source struct {
	cfg      Config
	topo     Topology
	prefetch int
	log      zerolog.Logger
	// next is the index in cfg.URLs() of the broker to try first: the one
	// after the last connected, so that a node that died is tried last.
	// Open is called by one Runner, one session at a time.
	next int
	// misfit is why the last Open failed when it is a queue declared
	// otherwise (*QueueArgError), which will not cure itself; else nil.
	misfit atomic.Pointer[QueueArgError]
	// live is the last session Open made, for Ready.
	live atomic.Pointer[consumeSession]
}

// NewSource returns a source that consumes both queues of cfg's topology
// with prefetch deliveries in flight per queue.
func NewSource(cfg Config, prefetch int, log zerolog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if prefetch < 1 || prefetch > 65535 {
		return nil, fmt.Errorf("rabbitmq: prefetch %d, want 1..65535", prefetch)
	}
	return &Source{
		cfg: cfg, topo: cfg.Topology(), prefetch: prefetch,
		log: log.With().Str("component", "rabbitmq.source").Logger(),
	}, nil
}

// Ready reports whether the consumer consumes now: nil while the last
// session Open made is live; a queue it cannot consume until an operator
// acts, one declared otherwise than configured (a *QueueArgError,
// which says what to do), met by the last Open; else ErrNotConnected (the
// broker is down, or the session was closed).
func (s *Source) Ready(context.Context) error {
	if qerr := s.misfit.Load(); qerr != nil {
		return qerr
	}
	sess := s.live.Load()
	if sess == nil {
		return ErrNotConnected
	}
	select {
	case <-sess.done:
		return fmt.Errorf("%w: %w", ErrNotConnected, sess.err)
	case <-sess.closing:
		return fmt.Errorf("%w: session closed", ErrNotConnected)
	default:
		return nil
	}
}

var errSessionLost = errors.New("rabbitmq session lost")

// consumeSession is one connection and its channel per queue.
type consumeSession struct {
	conn   *amqp.Connection
	queues map[string]*queueChannel
	out    chan consumer.Delivery

	done     chan struct{} // closed when the session is lost
	loseOnce sync.Once
	err      error

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // the forwarders
}

type queueChannel struct {
	queue string
	kind  kv.Kind
	tag   string // consumer tag
	ch    *amqp.Channel
	attrs []attribute.KeyValue // what every delivery's span says
}

// Open connects, declares the topology, and starts consuming both queues.
func (s *Source) Open(ctx context.Context) (consumer.Session, error) {
	urls := s.cfg.URLs()
	conn, at, err := dialAny(urls, s.cfg.TLSCAFile, s.next, "kvstack consumer", 0)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s.next = (at + 1) % len(urls)
	sess := &consumeSession{
		conn:    conn,
		queues:  map[string]*queueChannel{},
		out:     make(chan consumer.Delivery),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
	}
	if err := s.start(sess, serverAttrs(urls[at])); err != nil {
		sess.Close()
		var qerr *QueueArgError
		if errors.As(err, &qerr) {
			s.misfit.Store(qerr)
			s.log.Error().Err(err).Msg("rabbitmq consumer cannot use its queue")
		}
		return nil, err
	}
	s.misfit.Store(nil)
	s.live.Store(sess)
	s.log.Info().Str("url", redact(urls[at])).Strs("queues", s.topo.Queues()).Int("prefetch", s.prefetch).
		Msg("rabbitmq consumer connected")
	return sess, nil
}

func (s *Source) start(sess *consumeSession, server []attribute.KeyValue) error {
	lost := sess.conn.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		select {
		case e := <-lost:
			sess.lose(fmt.Errorf("connection closed: %w", asError(e)))
		case <-sess.closing:
		}
	}()
	if err := DeclareOrCheck(sess.conn, s.topo); err != nil {
		return err
	}
	id := uuid.NewString()
	for _, kind := range kv.Kinds {
		queue, err := s.topo.QueueOf(kind)
		if err != nil {
			return err
		}
		ch, err := sess.conn.Channel()
		if err != nil {
			return fmt.Errorf("open channel: %w", err)
		}
		if err := ch.Qos(s.prefetch, 0, false); err != nil {
			return fmt.Errorf("qos: %w", err)
		}
		qc := &queueChannel{
			queue: queue, kind: kind, tag: "kvstack-" + id + "-" + string(kind), ch: ch,
			attrs: append([]attribute.KeyValue{semconv.MessagingSystemRabbitMQ}, server...),
		}
		in, err := ch.Consume(qc.queue, qc.tag, false, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("consume %s: %w", qc.queue, err)
		}
		sess.queues[qc.queue] = qc
		chLost := ch.NotifyClose(make(chan *amqp.Error, 1))
		sess.wg.Add(1)
		go sess.forward(qc, in, chLost)
	}
	return nil
}

// forward passes qc's deliveries on, in order, until the channel closes,
// the broker cancels the consumer (its queue was deleted), or Close.
func (sess *consumeSession) forward(qc *queueChannel, in <-chan amqp.Delivery, chLost <-chan *amqp.Error) {
	defer sess.wg.Done()
	for {
		select {
		case d, ok := <-in:
			if !ok {
				select {
				case e := <-chLost:
					sess.lose(fmt.Errorf("channel of %s closed: %w", qc.queue, asError(e)))
				default:
					sess.lose(fmt.Errorf("consumer on %s cancelled", qc.queue))
				}
				return
			}
			select {
			case sess.out <- qc.delivery(d):
			case <-sess.closing:
				return
			}
		case <-sess.closing:
			return
		}
	}
}

func (qc *queueChannel) delivery(d amqp.Delivery) consumer.Delivery {
	attrs := append(qc.attrs[:len(qc.attrs):len(qc.attrs)],
		semconv.MessagingRabbitMQDestinationRoutingKey(d.RoutingKey),
		semconv.MessagingRabbitMQMessageDeliveryTag(int(d.DeliveryTag)),
		semconv.MessagingMessageID(d.MessageId),
		semconv.MessagingMessageBodySize(len(d.Body)),
	)
	return consumer.Delivery{
		Queue: qc.queue, Kind: qc.kind, Body: d.Body, Tag: d.DeliveryTag,
		Header: HeaderCarrier(d.Headers), Attrs: attrs,
	}
}

func (sess *consumeSession) lose(err error) {
	sess.loseOnce.Do(func() {
		sess.err = fmt.Errorf("%w: %w", errSessionLost, err)
		close(sess.done)
	})
}

func (sess *consumeSession) Deliveries() <-chan consumer.Delivery { return sess.out }
func (sess *consumeSession) Done() <-chan struct{}                { return sess.done }

// Err says why the session was lost; nil while it is not.
func (sess *consumeSession) Err() error {
	select {
	case <-sess.done:
		return sess.err
	default:
		return nil
	}
}

// Settle dead-letters (nack without requeue: the queue's DLX routes the
// message to its DLQ) the deliveries so judged, then acks the rest with
// one multiple-ack per queue on its highest acked tag.
func (sess *consumeSession) Settle(batch []consumer.Delivery, outcomes []kv.Outcome) error {
	ackUpTo := map[*queueChannel]uint64{}
	for i, d := range batch {
		qc, ok := sess.queues[d.Queue]
		if !ok {
			return fmt.Errorf("settle: no channel for queue %q", d.Queue)
		}
		if outcomes[i] == kv.DeadLettered {
			if err := qc.ch.Nack(d.Tag, false, false); err != nil {
				return fmt.Errorf("dead-letter on %s: %w", d.Queue, err)
			}
			continue
		}
		ackUpTo[qc] = max(ackUpTo[qc], d.Tag)
	}
	for qc, tag := range ackUpTo {
		if err := qc.ch.Ack(tag, true); err != nil {
			return fmt.Errorf("ack on %s: %w", qc.queue, err)
		}
	}
	return nil
}

// Stop asks the broker to stop delivering; what is prefetched and not
// settled is requeued when the channels close.
func (sess *consumeSession) Stop() {
	for _, qc := range sess.queues {
		_ = qc.ch.Cancel(qc.tag, false)
	}
}

// Close closes the connection (the broker requeues whatever is not
// settled) and waits for the forwarders.
func (sess *consumeSession) Close() error {
	var err error
	sess.closeOnce.Do(func() {
		close(sess.closing)
		err = sess.conn.Close()
		sess.wg.Wait()
	})
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}
