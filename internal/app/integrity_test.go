package app

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
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
