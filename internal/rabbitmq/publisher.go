package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
)

// Errors a Publish or Ready can return; all wrap kv.ErrUnavailable.
var (
	ErrNotConnected = fmt.Errorf("rabbitmq: not connected: %w", kv.ErrUnavailable)
	ErrBlocked      = fmt.Errorf("rabbitmq: connection blocked by the broker: %w", kv.ErrUnavailable)
	ErrNacked       = fmt.Errorf("rabbitmq: broker did not confirm the message: %w", kv.ErrUnavailable)
	ErrTimeout      = fmt.Errorf("rabbitmq: no confirm in time: %w", kv.ErrUnavailable)
	ErrClosed       = fmt.Errorf("rabbitmq: publisher closed: %w", kv.ErrUnavailable)
)

// Publisher publishes operations to their queue and waits for the broker's
// confirm. It keeps one connection with a pool of confirm-mode channels,
// and a supervisor goroutine that (re)connects, (re)declares the topology
// and replaces dead channels. It is safe for concurrent use.
type Publisher struct {
	cfg  Config
	topo Topology
	keys *msgsig.Keys // sign every message
	log  zerolog.Logger
	// tracer makes the PRODUCER spans: otel.Tracer looks its scope up
	// under a lock on every call (~1 µs of a PUT's), so once here. One
	// obtained before the global provider is set follows it.
	tracer trace.Tracer

	sess atomic.Pointer[session] // nil while disconnected
	// misfit is why the last connection failed when it is a queue declared
	// otherwise (*QueueArgError), which will not cure itself; else nil.
	misfit atomic.Pointer[QueueArgError]
	// next is the index in cfg.URLs() of the broker to try first when
	// connecting: the one after the last connected, so that a node that
	// died is tried last. Only supervise uses it.
	next int

	mu     sync.Mutex
	up     chan struct{} // closed while a session is live; see WaitReady
	closed atomic.Bool

	// inflight is read-locked by every Publish, so Close can wait for them.
	inflight sync.RWMutex
	stop     chan struct{}
	wg       sync.WaitGroup
}

// session is one connection and its channels.
type session struct {
	conn    *amqp.Connection
	broker  string               // the connected node's host:port
	server  []attribute.KeyValue // the connected node (server.address, port), for spans
	idle    chan *amqp.Channel   // the pool; capacity = channel count
	dead    chan struct{}        // a borrower found a closed channel: replace one
	nacked  chan *amqp.Channel   // a channel the broker nacked a publish on: close it
	done    chan struct{}        // closed when the session ends
	blocked atomic.Bool
}

// NewPublisher starts the publisher's supervisor and returns at once: the
// API must start, and answer /readyz with 503, while RabbitMQ is down.
// Until the first connection is up, Publish fails with ErrNotConnected; use
// WaitReady to wait for it. It takes no context: the publisher lives until
// Close, not until a context is cancelled, because requests still in
// flight during a graceful shutdown must be able to publish.
func NewPublisher(cfg Config, keys *msgsig.Keys, log zerolog.Logger) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, errors.New("rabbitmq publisher: no message signing keys")
	}
	p := &Publisher{
		cfg:    cfg,
		topo:   cfg.Topology(),
		keys:   keys,
		log:    log.With().Str("component", "rabbitmq.publisher").Logger(),
		tracer: tracer(),
		up:     make(chan struct{}),
		stop:   make(chan struct{}),
	}
	p.wg.Add(1)
	go p.supervise()
	return p, nil
}

// Message is op as the publisher sends it: a persistent JSON message whose
// id, timestamp and type repeat its version and kind (the consumer reads the
// body; the properties are for people and tools), signed with keys (the
// msgsig headers). Its writer, when named, is header kv.WriterHeader, in
// the signed set. The trace context is added to its headers when it is
// published.
func Message(op kv.Op, keys *msgsig.Keys) (amqp.Publishing, error) {
	body, err := kv.EncodeMessage(op)
	if err != nil {
		return amqp.Publishing{}, err
	}
	keyID, sig := keys.Sign(string(op.Kind), op.WrittenBy, body)
	msg := amqp.Publishing{
		Headers:      amqp.Table{msgsig.KeyIDHeader: keyID, msgsig.SignatureHeader: sig},
		DeliveryMode: amqp.Persistent,
		ContentType:  "application/json",
		MessageId:    op.Version.OpID.String(),
		Timestamp:    op.Version.Time,
		Type:         string(op.Kind),
		Body:         body,
	}
	if op.WrittenBy != "" {
		msg.Headers[kv.WriterHeader] = op.WrittenBy
	}
	return msg, nil
}

// Publish sends op to its queue (Topology.QueueOf) as
// a persistent message, and returns nil only once the broker confirmed it.
// Any failure to get that confirm within PublishTimeout (not connected,
// blocked, channel closed, nack, timeout) wraps kv.ErrUnavailable.
func (p *Publisher) Publish(ctx context.Context, op kv.Op) error {
	queue, err := p.topo.QueueOf(op.Kind)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	msg, err := Message(op, p.keys)
	if err != nil {
		return fmt.Errorf("publish %s: encode: %w", queue, err)
	}
	ctx, span := p.startPublish(ctx, queue, &msg)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	err = p.publish(ctx, queue, msg)
	if err != nil {
		err = fmt.Errorf("publish %s %s: %w", queue, msg.MessageId, err)
	}
	endSpan(span, err)
	return err
}

func (p *Publisher) publish(ctx context.Context, queue string, msg amqp.Publishing) error {
	p.inflight.RLock()
	defer p.inflight.RUnlock()
	if p.isClosed() {
		return ErrClosed
	}
	s := p.sess.Load()
	if s == nil {
		return ErrNotConnected
	}
	if s.blocked.Load() {
		return ErrBlocked
	}
	ch, err := s.borrow(ctx)
	if err != nil {
		return err
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
	s.giveBack(ch) // other publishes may use the channel while this one waits
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("%w (%w)", ErrTimeout, ctx.Err())
	case err != nil:
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	case dc == nil:
		return fmt.Errorf("%w: channel not in confirm mode", ErrNacked)
	}
	select {
	case <-dc.Done():
		if dc.Acked() {
			return nil
		}
		if ch.IsClosed() {
			return fmt.Errorf("%w: channel closed before the confirm", ErrNacked)
		}
		s.retire(ch)
		return ErrNacked
	case <-ctx.Done():
		return fmt.Errorf("%w (%w)", ErrTimeout, ctx.Err())
	}
}

// borrow takes a live channel from the pool.
func (s *session) borrow(ctx context.Context) (*amqp.Channel, error) {
	for {
		select {
		case ch := <-s.idle:
			if !ch.IsClosed() {
				return ch, nil
			}
			s.replace()
		case <-s.done:
			return nil, ErrNotConnected
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: no free channel (%w)", ErrTimeout, ctx.Err())
		}
	}
}

// giveBack returns ch to the pool, or asks the supervisor for a new one if
// ch died. Neither blocks: there are never more channels than pool slots.
func (s *session) giveBack(ch *amqp.Channel) {
	if ch.IsClosed() {
		s.replace()
		return
	}
	select {
	case s.idle <- ch:
	default:
	}
}

// retire asks the supervisor to close ch, which the pool then replaces. A
// nack is rare, and may mean the channel will nack everything from now on:
// RabbitMQ 3.10 gives each channel a quorum queue client that keeps the
// leader it was first told of, and one whose leader's node died rejects
// every publish until that node is back (seconds after a kill -9, for
// ever if it stays down), while a new channel finds the new leader.
func (s *session) retire(ch *amqp.Channel) {
	select {
	case s.nacked <- ch:
	default:
	}
}

func (s *session) replace() {
	select {
	case s.dead <- struct{}{}:
	default:
	}
}

// Ready reports whether a Publish can succeed now: nil when connected and
// not blocked by the broker (a resource alarm).
func (p *Publisher) Ready(ctx context.Context) error {
	if p.isClosed() {
		return ErrClosed
	}
	s := p.sess.Load()
	switch {
	case s == nil && p.misfit.Load() != nil:
		return fmt.Errorf("%w: %w", ErrNotConnected, p.misfit.Load())
	case s == nil || s.conn.IsClosed():
		return ErrNotConnected
	case s.blocked.Load():
		return ErrBlocked
	}
	return nil
}

// Broker is the address (host:port) of the node the publisher is connected
// to, "" while it is not: the node whose loss it would have to survive.
func (p *Publisher) Broker() string {
	if s := p.sess.Load(); s != nil {
		return s.broker
	}
	return ""
}

// WaitReady waits until the publisher is connected, or ctx is done.
func (p *Publisher) WaitReady(ctx context.Context) error {
	for {
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		if p.closed.Load() {
			return ErrClosed
		}
		select {
		case <-up:
			if err := p.Ready(ctx); err == nil {
				return nil
			}
			// blocked or just lost: look again shortly
			if !sleepCtx(ctx, 50*time.Millisecond) {
				return fmt.Errorf("rabbitmq: wait ready: %w (%w)", p.Ready(ctx), ctx.Err())
			}
		case <-ctx.Done():
			return fmt.Errorf("rabbitmq: wait ready: %w (%w)", ErrNotConnected, ctx.Err())
		}
	}
}

// Close stops the supervisor and closes the connection. It waits for the
// publishes in flight (each bounded by PublishTimeout) and makes later ones
// fail with ErrClosed.
func (p *Publisher) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	// Taking the write lock waits for the publishes in flight (they hold
	// the read lock); later ones see closed.
	p.inflight.Lock()
	p.inflight.Unlock() //lint:ignore SA2001 the lock is taken only to wait
	close(p.stop)
	p.wg.Wait()
	return nil
}

func (p *Publisher) isClosed() bool { return p.closed.Load() }

// supervise keeps a session alive until Close. A session that was up and is
// lost is replaced at once, on the next broker of the list; only failures
// to connect back off.
func (p *Publisher) supervise() {
	defer p.wg.Done()
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		err := p.serve(b)
		select {
		case <-p.stop:
			return
		default:
		}
		if errors.Is(err, errSessionLost) {
			p.log.Warn().Err(err).Msg("rabbitmq publisher lost its connection; reconnecting")
			continue
		}
		wait := b.NextBackOff()
		var qerr *QueueArgError
		if errors.As(err, &qerr) {
			p.misfit.Store(qerr)
			p.log.Error().Err(err).Dur("retry_in", wait).Msg("rabbitmq publisher cannot use its queue; retrying")
		} else {
			p.log.Warn().Err(err).Dur("retry_in", wait).Str("url", p.cfg.RedactedURL()).Msg("rabbitmq publisher not connected; retrying")
		}
		if !sleep(p.stop, wait) {
			return
		}
	}
}

// serve runs one session: connect, declare, fill the pool, then watch the
// connection until it dies or the publisher stops.
func (p *Publisher) serve(b *backoff.ExponentialBackOff) error {
	urls := p.cfg.URLs()
	conn, at, err := dialAny(urls, p.cfg.TLSCAFile, p.next, "kvstack publisher", p.cfg.PublishTimeout)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	p.next = (at + 1) % len(urls)
	closes := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
	s := &session{
		conn:   conn,
		broker: hostPort(urls[at]),
		server: serverAttrs(urls[at]),
		idle:   make(chan *amqp.Channel, p.cfg.PublishChannels),
		dead:   make(chan struct{}, p.cfg.PublishChannels),
		nacked: make(chan *amqp.Channel, p.cfg.PublishChannels),
		done:   make(chan struct{}),
	}
	// The library delivers blocked/unblocked from its reader goroutine and
	// waits for us to take it, so drain it apart from the RPCs below.
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for bl := range blocks {
			s.blocked.Store(bl.Active)
			p.log.Warn().Bool("blocked", bl.Active).Str("reason", bl.Reason).Msg("rabbitmq publisher connection flow")
		}
	}()
	defer func() {
		_ = conn.CloseDeadline(time.Now().Add(p.cfg.PublishTimeout))
	}()

	if err := p.declare(conn); err != nil {
		return err
	}
	for range p.cfg.PublishChannels {
		ch, err := openConfirmChannel(conn)
		if err != nil {
			return err
		}
		s.idle <- ch
	}
	p.misfit.Store(nil)
	p.setSession(s)
	defer p.clearSession(s)
	b.Reset()
	p.log.Info().Str("url", redact(urls[at])).Int("channels", p.cfg.PublishChannels).Msg("rabbitmq publisher connected")

	for {
		select {
		case <-p.stop:
			return nil
		case err := <-closes:
			return fmt.Errorf("%w: connection to %s closed: %w", errSessionLost, redact(urls[at]), asError(err))
		case ch := <-s.nacked:
			_ = ch.Close() // borrow and giveBack replace it once closed
		case <-s.dead:
			ch, err := openConfirmChannel(conn)
			if err != nil {
				return fmt.Errorf("%w: replace channel: %w", errSessionLost, err)
			}
			s.idle <- ch
		}
	}
}

func (p *Publisher) declare(conn *amqp.Connection) error {
	return DeclareOrCheck(conn, p.topo)
}

func openConfirmChannel(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	return ch, nil
}

func (p *Publisher) setSession(s *session) {
	p.sess.Store(s)
	p.mu.Lock()
	close(p.up)
	p.mu.Unlock()
}

// clearSession unpublishes s first, so new publishes fail fast, then wakes
// the borrowers waiting on it.
func (p *Publisher) clearSession(s *session) {
	p.sess.CompareAndSwap(s, nil)
	p.mu.Lock()
	p.up = make(chan struct{})
	p.mu.Unlock()
	close(s.done)
}

// asError keeps a nil *amqp.Error from becoming a non-nil error.
func asError(e *amqp.Error) error {
	if e == nil {
		return errors.New("closed")
	}
	return e
}
