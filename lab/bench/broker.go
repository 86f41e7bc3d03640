package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/lab/native/engines"
)

// rawPublisher publishes persistent messages on one confirm-mode channel,
// keeping up to window unconfirmed: the broker's own speed for the API's
// kind of message.
type rawPublisher struct {
	url, caFile string
	conn        *amqp.Connection
	ch          *amqp.Channel
}

// newRawPublisher connects to url (TLS trusting caFile for amqps://) as
// the stack's administrator: the harness declares, fills, purges and
// deletes its own scratch queue and reads the work queues' depths, which
// the replicas' publish-only user may not.
func newRawPublisher(url, caFile string) (*rawPublisher, error) {
	p := &rawPublisher{url: url, caFile: caFile}
	return p, p.live()
}

// live reconnects when the connection or channel was lost (another
// engineer's test may restart the broker; a failed passive declare closes
// the channel).
func (p *rawPublisher) live() error {
	if p.conn != nil && !p.conn.IsClosed() && p.ch != nil && !p.ch.IsClosed() {
		return nil
	}
	if p.conn != nil {
		p.conn.Close()
	}
	conn, err := engines.DialAMQP(p.url, p.caFile)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("rabbitmq channel: %w", err)
	}
	p.conn, p.ch = conn, ch
	return nil
}

func (p *rawPublisher) Close() {
	if p.conn != nil {
		p.conn.Close()
	}
}

// declareScratch declares a durable queue of the app's queue type; one
// left by an earlier run with another type (its declaration fails) is
// deleted and declared again: it is the harness's own.
func (p *rawPublisher) declareScratch(name, queueType string) error {
	declare := func() error {
		if err := p.live(); err != nil {
			return err
		}
		_, err := p.ch.QueueDeclare(name, true, false, false, false, amqp.Table{amqp.QueueTypeArg: queueType})
		return err
	}
	var aerr *amqp.Error
	if err := declare(); !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
		return err
	}
	p.deleteQueue(name)
	return declare()
}

func (p *rawPublisher) deleteQueue(name string) {
	if p.live() != nil {
		return
	}
	_, _ = p.ch.QueueDelete(name, false, false, false)
}

// depth is the number of ready messages in queue.
func (p *rawPublisher) depth(queue string) (int, error) {
	if err := p.live(); err != nil {
		return 0, err
	}
	q, err := p.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

// settle waits up to 5 s for queue to hold n ready messages (the broker
// counts a message once it is routed, a little after its confirm) and
// returns the last depth seen.
func (p *rawPublisher) settle(queue string, n int) (int, error) {
	var (
		have int
		err  error
	)
	for range 50 {
		if have, err = p.depth(queue); err == nil && have >= n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return have, err
}

// publish sends what mk makes (i counts from 0) to queue with window
// confirms in flight, until dur passes or n (0: no bound) were confirmed.
// It returns the confirmed count and the time taken.
func (p *rawPublisher) publish(ctx context.Context, queue string, window int, dur time.Duration, n int, mk func(i int) amqp.Publishing) (int, time.Duration, error) {
	return p.publishAt(ctx, queue, window, dur, n, 0, mk)
}

// publishAt is publish at rate messages a second (as fast as the window
// allows when rate ≤ 0): message i is sent no earlier than i ÷ rate after
// the start, the window emptied of the confirmed ones meanwhile.
func (p *rawPublisher) publishAt(ctx context.Context, queue string, window int, dur time.Duration, n int, rate float64, mk func(i int) amqp.Publishing) (int, time.Duration, error) {
	if err := p.live(); err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	start := time.Now()
	inflight := make([]*amqp.DeferredConfirmation, 0, window)
	confirmed := 0
	wait := func(dc *amqp.DeferredConfirmation) error {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("nacked")
		}
		confirmed++
		return nil
	}
	for i := 0; n == 0 || i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if !sleepUntil(ctx, due) {
				break
			}
			inflight = confirmedOff(inflight, &confirmed)
		}
		if len(inflight) == window {
			if err := wait(inflight[0]); err != nil {
				break
			}
			inflight = inflight[1:]
		}
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, mk(i))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return confirmed, time.Since(start), err
		}
		inflight = append(inflight, dc)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if n > 0 { // a fill: done when everything is confirmed
		for _, dc := range inflight {
			if ok, err := dc.WaitContext(fctx); err != nil || !ok {
				return confirmed, time.Since(start), fmt.Errorf("confirm: ok=%v %v", ok, err)
			}
			confirmed++
		}
		return confirmed, time.Since(start), nil
	}
	// A timed run counts what was confirmed within the time; the rest is
	// still waited for, so the next run starts on a quiet channel.
	inflight = confirmedOff(inflight, &confirmed)
	elapsed := time.Since(start)
	for _, dc := range inflight {
		_, _ = dc.WaitContext(fctx)
	}
	return confirmed, elapsed, nil
}

func (p *rawPublisher) purge(name string) {
	if p.live() != nil {
		return
	}
	_, _ = p.ch.QueuePurge(name, false)
}

// rawConsume drains n messages from queue with a plain amqp091-go consumer
// on its own connection, as the stack's consumer takes them (manual ack, QoS
// prefetch, one multiple-ack per batch deliveries) but doing nothing with
// them, and returns its rate from the first delivery to the last ack: what
// the broker allows this way of consuming, before any of our work.
func rawConsume(ctx context.Context, url, caFile, queue string, n, prefetch, batch int, limit time.Duration) (float64, error) {
	if n < 2 || batch < 1 {
		return 0, fmt.Errorf("raw consume: %d messages in batches of %d", n, batch)
	}
	conn, err := engines.DialAMQP(url, caFile)
	if err != nil {
		return 0, fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close() // unacked deliveries go back to the queue
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("rabbitmq channel: %w", err)
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return 0, fmt.Errorf("qos %d: %w", prefetch, err)
	}
	ds, err := ch.Consume(queue, "kvbench-raw-consume", false, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("consume %s: %w", queue, err)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var t0 time.Time
	for got := 0; got < n; {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("raw consume: %d of %d messages within %s: %w", got, n, limit, ctx.Err())
		case d, ok := <-ds:
			if !ok {
				return 0, fmt.Errorf("raw consume: deliveries closed after %d of %d messages", got, n)
			}
			if got++; got == 1 {
				t0 = time.Now()
			}
			if got%batch == 0 || got == n {
				if err := d.Ack(true); err != nil {
					return 0, fmt.Errorf("raw consume: ack: %w", err)
				}
			}
		}
	}
	// The n-1 messages after the first, as drain counts from the first
	// handled one.
	return float64(n-1) / time.Since(t0).Seconds(), nil
}

// confirmedOff takes the leading messages of inflight the broker has
// confirmed (acked) off it, counting them, without waiting.
func confirmedOff(inflight []*amqp.DeferredConfirmation, confirmed *int) []*amqp.DeferredConfirmation {
	for len(inflight) > 0 {
		select {
		case <-inflight[0].Done():
		default:
			return inflight
		}
		if !inflight[0].Acked() {
			return inflight // a nack: wait reports it
		}
		*confirmed++
		inflight = inflight[1:]
	}
	return inflight
}

// sleepUntil sleeps until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
