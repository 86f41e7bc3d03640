package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/clock"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// Messages put straight on the queue by someone without the stack's key
// (the broker's credentials are enough to publish) are dead-lettered with
// their reason, and the key they aim at keeps the value the API wrote: an
// unsigned message, one signed with another key, and a signed message
// whose body was replaced.
func TestForgedMessagesAreDeadLettered(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	consumer, _ := s.startConsumer()
	real := s.put("victim", "real")
	s.waitStored(real)

	body := func(value string) []byte {
		return fmt.Appendf(nil, `{"key":"victim","value":%q,"timestamp":%q,"op_id":%q}`,
			value, time.Now().UTC().Format(kv.TimestampLayout), uuid.NewString())
	}
	other, err := msgsig.ParseKeys("a-key-the-stack-does-not-hold-of-32-bytes")
	if err != nil {
		t.Fatal(err)
	}
	signedBy := func(keys *msgsig.Keys, signed, sent []byte) amqp.Publishing {
		id, sig := keys.Sign(string(kv.KindPut), "", signed)
		return amqp.Publishing{DeliveryMode: amqp.Persistent, Body: sent,
			Headers: amqp.Table{msgsig.KeyIDHeader: id, msgsig.SignatureHeader: sig}}
	}
	genuine := body("genuine")
	rabbittest.Publish(t, s.mq, s.mq.QueueAdd,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body("unsigned")},
		signedBy(other, body("foreign key"), body("foreign key")),
		signedBy(testKeys, genuine, body("forged")),
	)
	marker := kv.Op{Kind: kv.KindPut, Key: "marker", Value: "m", Version: kv.NewVersion(time.Now())}
	publishOps(t, s.mq, marker)

	s.waitStored(marker) // the queue is FIFO: the three before it are handled
	rabbittest.WaitCount(t, s.mq, rabbitmq.DLQ(s.mq.QueueAdd), 3, 20*time.Second)
	if r := s.do("GET", "/api?key=victim", ""); r.status != http.StatusOK || r.body["value"] != "real" {
		t.Errorf("GET victim = %d %v, want the value the API wrote", r.status, r.body)
	}
	s.requireCacheMatchesStore("victim")
	exposition := scrape(t, "http://"+consumer, false)
	for _, reason := range []string{msgsig.ReasonUnsigned, msgsig.ReasonUnknownKey, msgsig.ReasonBad} {
		requireSeries(t, "consumer", exposition,
			fmt.Sprintf(`kvstack_consumer_dead_letters_total{queue=%q,reason=%q} 1`, s.mq.QueueAdd, reason))
	}
}

// A message stamped 9999-12-31T23:59:59.999999Z, signed with the stack's
// own key (as an API whose clock ran wild would make it), is dead-lettered
// as future_timestamp: under last writer wins it would lock its key for
// ever. The key keeps the value the API wrote.
func TestFarFutureMessageIsDeadLettered(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	consumer, _ := s.startConsumer()
	real := s.put("locked?", "real")
	s.waitStored(real)

	publishSigned(t, s.mq, kv.KindPut, fmt.Sprintf(`{"key":"locked?","value":"for ever","timestamp":"9999-12-31T23:59:59.999999Z","op_id":%q}`, uuid.NewString()))
	publishSigned(t, s.mq, kv.KindDelete, fmt.Sprintf(`{"key":"locked?","timestamp":%q,"op_id":%q}`,
		time.Now().Add(2*time.Minute).UTC().Format(kv.TimestampLayout), uuid.NewString()))
	marker := kv.Op{Kind: kv.KindPut, Key: "marker", Value: "m", Version: kv.NewVersion(time.Now())}
	publishOps(t, s.mq, marker)

	s.waitStored(marker)
	rabbittest.WaitCount(t, s.mq, rabbitmq.DLQ(s.mq.QueueAdd), 1, 20*time.Second)
	rabbittest.WaitCount(t, s.mq, rabbitmq.DLQ(s.mq.QueueDel), 1, 20*time.Second)
	if r := s.do("GET", "/api?key=locked%3F", ""); r.status != http.StatusOK || r.body["value"] != "real" {
		t.Errorf("GET after the far-future messages = %d %v, want the value the API wrote", r.status, r.body)
	}
	later := s.put("locked?", "later")
	s.waitStored(later)
	exposition := scrape(t, "http://"+consumer, false)
	for _, q := range []string{s.mq.QueueAdd, s.mq.QueueDel} {
		requireSeries(t, "consumer", exposition, fmt.Sprintf(`kvstack_consumer_dead_letters_total{queue=%q,reason="future_timestamp"} 1`, q))
	}
}

// An API whose clock is known to be off from PostgreSQL's by more than half
// of KV_MAX_CLOCK_SKEW refuses writes, 503 clock_skew with Retry-After,
// publishing nothing, and reports writes unavailable in /readyz; reads go
// on. Once the clocks agree again, writes are accepted.
func TestSkewedAPIRefusesWrites(t *testing.T) {
	var skew atomic.Int64
	skew.Store(int64(-time.Hour)) // PostgreSQL an hour behind: this clock an hour ahead
	was := referenceClock
	referenceClock = func(store *postgres.Store) clock.Reference {
		return func(ctx context.Context) (time.Time, error) {
			t, err := store.Now(ctx)
			return t.Add(time.Duration(skew.Load())), err
		}
	}
	t.Cleanup(func() { referenceClock = was })

	s := newStack(t)
	s.apiCfg.Clock.CheckInterval = 50 * time.Millisecond
	s.startAPI()
	r := s.do("PUT", "/api", `{"key":"skewed","value":"v"}`)
	if r.status != http.StatusServiceUnavailable || r.body["error"] != "clock_skew" || r.header.Get("Retry-After") == "" {
		t.Fatalf("PUT from a skewed API = %d %v (Retry-After %q), want 503 clock_skew with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
	if n := rabbittest.Count(t, s.mq, s.mq.QueueAdd); n != 0 {
		t.Errorf("%d messages published by the skewed API", n)
	}
	if r := waitReadiness(t, s.api, http.StatusOK, map[string]string{"read": "ok", "write": "down"}); !strings.Contains(r.checks["clock"], "NTP") || r.checks["rabbitmq"] != "ok" {
		t.Errorf("/readyz checks %v, want the clock's advice, rabbitmq ok", r.checks)
	}
	requireSeries(t, "api", scrape(t, s.api, false), "kvstack_clock_offset_seconds -3")

	skew.Store(int64(10 * time.Second)) // within half of the default minute
	waitReadiness(t, s.api, http.StatusOK, map[string]string{"write": "ok"})
	if r := s.do("PUT", "/api", `{"key":"skewed","value":"v"}`); r.status != http.StatusAccepted {
		t.Errorf("PUT once the clocks agree = %d %v, want 202", r.status, r.body)
	}
}
