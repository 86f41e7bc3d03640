//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
)

// Messages put straight on the stack's add_key queue by someone holding
// the broker's credentials but not the stack's message key, and one
// stamped 9999-12-31 even though signed with the stack's own key, are
// dead-lettered; the key keeps the value written through nginx, and later
// writes still win.
func TestForgedAndFarFutureMessagesAreDeadLettered(t *testing.T) {
	h := newHarness(t)
	env := loadStackEnv(t)
	key := uniq("e2e-integrity")
	put := func(value string) {
		t.Helper()
		r := h.do(t, http.MethodPut, "/api?wait=applied", []byte(fmt.Sprintf(`{"key":%q,"value":%q}`, key, value)))
		if got := r.json(t); r.status != http.StatusOK || got["status"] != "applied" {
			t.Fatalf("PUT %s wait=applied: %d %v, want 200 applied", value, r.status, got)
		}
	}
	put("real")

	own, err := msgsig.ParseKeys(env.s.MessageKeys())
	if err != nil {
		t.Fatalf("the stack's message key: %v", err)
	}
	other, err := msgsig.ParseKeys("a-key-the-stack-does-not-hold-of-32-bytes")
	if err != nil {
		t.Fatal(err)
	}
	body := func(value, ts string) []byte {
		return fmt.Appendf(nil, `{"key":%q,"value":%q,"timestamp":%q,"op_id":%q}`, key, value, ts, uuid.NewString())
	}
	signed := func(keys *msgsig.Keys, b []byte) amqp.Publishing {
		id, sig := keys.Sign(string(kv.KindPut), "", b) // no writer: as a message of an API without auth
		return amqp.Publishing{DeliveryMode: amqp.Persistent, Body: b,
			Headers: amqp.Table{msgsig.KeyIDHeader: id, msgsig.SignatureHeader: sig}}
	}
	now := time.Now().UTC().Format(kv.TimestampLayout)
	genuine := signed(own, body("genuine", now))
	genuine.Body = body("altered", now)
	msgs := []amqp.Publishing{
		{DeliveryMode: amqp.Persistent, Body: body("unsigned", now)},
		signed(other, body("foreign key", now)),
		genuine,
		signed(own, body("for ever", "9999-12-31T23:59:59.999999Z")),
	}

	before := dlqDepth(t, env, "add_key.dlq")
	conn, err := env.dialAMQP(env.s.Get("RABBITMQ_URL"))
	if err != nil {
		t.Fatalf("RabbitMQ of the stack: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirm("", "add_key", false, false, m)
		if err != nil {
			t.Fatalf("publish to add_key: %v", err)
		}
		if !dc.Wait() {
			t.Fatalf("publish to add_key not confirmed")
		}
	}

	deadline := time.Now().Add(20 * time.Second)
	for dlqDepth(t, env, "add_key.dlq") < before+len(msgs) {
		if time.Now().After(deadline) {
			t.Fatalf("add_key.dlq holds %d, want at least %d: the refused messages were not all dead-lettered", dlqDepth(t, env, "add_key.dlq"), before+len(msgs))
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil)
	if got := r.json(t); r.status != http.StatusOK || got["value"] != "real" {
		t.Errorf("GET after the refused messages: %d %v, want the value written through nginx", r.status, got)
	}
	put("later")
}

// dlqDepth is the number of messages in queue on the stack's RabbitMQ.
func dlqDepth(t *testing.T, env stackEnv, queue string) int {
	t.Helper()
	depth, err := env.queueDepths(queue)
	if err != nil {
		t.Fatal(err)
	}
	return depth[queue]
}
