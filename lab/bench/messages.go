package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
)

// opMessage is an add_key message for key as the API publishes it: the
// body, the properties, the signature, and the W3C trace context of a
// publish span in the headers, sampled or not as the API's sampler decided.
func (h *harness) opMessage(key, value string, sampled bool) amqp.Publishing {
	op := kv.Op{Kind: kv.KindPut, Key: key, Value: value, Version: kv.Version{Time: time.Now().UTC().Truncate(time.Microsecond), OpID: uuid.New()}}
	msg, _ := rabbitmq.Message(op, h.keys) // a put of a valid key always encodes
	msg.Headers["traceparent"] = traceparent(sampled)
	return msg
}

// traceparent is a new W3C traceparent: random trace and span ids, the
// sampled flag as asked.
func traceparent(sampled bool) string {
	var ids [24]byte
	_, _ = rand.Read(ids[:])
	flags := "00"
	if sampled {
		flags = "01"
	}
	return "00-" + hex.EncodeToString(ids[:16]) + "-" + hex.EncodeToString(ids[16:]) + "-" + flags
}

// SampledAt tells whether the i-th message (from 0) of a fill is sampled
// at ratio: exactly ⌊n·ratio⌋ of the first n are, evenly spread, as a
// ratio sampler would make them on average.
func SampledAt(i int, ratio float64) bool {
	if ratio >= 1 {
		return true
	}
	return math.Floor(float64(i+1)*ratio) > math.Floor(float64(i)*ratio)
}

// fill publishes n messages of fresh keys to queue, a share sampled of
// them sampled, and returns the queue's depth once they are there.
func (h *harness) fill(ctx context.Context, queue string, n int, sampled float64) (int, error) {
	base := h.keySeq
	h.keySeq += int64(n)
	_, _, err := h.pub.publish(ctx, queue, 256, 5*time.Minute, n, func(i int) amqp.Publishing {
		return h.opMessage(fmt.Sprintf("bench:apply:%010d", base+int64(i)), h.value, SampledAt(i, sampled))
	})
	if err != nil {
		return 0, err
	}
	have, err := h.pub.settle(queue, n)
	if err != nil {
		return 0, fmt.Errorf("depth of %s: %w", queue, err)
	}
	if have < n {
		return 0, fmt.Errorf("%s holds %d of the %d messages published", queue, have, n)
	}
	return have, nil
}

// consumeRef fills the scratch queue with n messages like the app's and
// times rawConsume draining them with the stack consumer's prefetch and
// batch size. The queue is deleted afterwards, whatever happens.
func (h *harness) consumeRef(ctx context.Context, n, prefetch, batch int) (float64, error) {
	rc := h.cons.RabbitMQ
	if err := h.pub.declareScratch(scratchQueue, rc.QueueType); err != nil {
		return 0, fmt.Errorf("scratch queue: %w", err)
	}
	defer h.pub.deleteQueue(scratchQueue)
	h.pub.purge(scratchQueue)
	got, err := h.fill(ctx, scratchQueue, n, 1)
	if err != nil {
		return 0, fmt.Errorf("filling %s: %w", scratchQueue, err)
	}
	// As the harness's administrator: the consumers' user may consume the
	// work queues alone.
	return rawConsume(ctx, h.pub.url, h.pub.caFile, scratchQueue, got, prefetch, batch, 2*time.Minute)
}
