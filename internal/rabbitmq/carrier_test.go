package rabbitmq

import (
	"context"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
)

func TestHeaderCarrierNilTable(t *testing.T) {
	var c HeaderCarrier
	if got := c.Get("traceparent"); got != "" {
		t.Errorf("Get on nil table = %q, want \"\"", got)
	}
	if got := c.Keys(); len(got) != 0 {
		t.Errorf("Keys on nil table = %v, want none", got)
	}
}

func TestHeaderCarrierGet(t *testing.T) {
	c := HeaderCarrier{"s": "text", "b": []byte("bytes"), "n": int32(7)}
	tests := []struct{ key, want string }{
		{"s", "text"},
		{"b", "bytes"},
		{"n", ""},
		{"missing", ""},
	}
	for _, tt := range tests {
		if got := c.Get(tt.key); got != tt.want {
			t.Errorf("Get(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	keys := c.Keys()
	slices.Sort(keys)
	if want := []string{"b", "n", "s"}; !slices.Equal(keys, want) {
		t.Errorf("Keys() = %v, want %v", keys, want)
	}
}

func TestHeaderCarrierTraceContextRoundTrip(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	prop := propagation.TraceContext{}

	headers := amqp.Table{}
	prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), HeaderCarrier(headers))
	if err := headers.Validate(); err != nil {
		t.Fatalf("injected headers are not a valid AMQP table: %v", err)
	}
	const wantTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := headers["traceparent"]; got != wantTP {
		t.Fatalf("traceparent = %v, want %s", got, wantTP)
	}

	tests := []struct {
		name    string
		headers amqp.Table
	}{
		{"string values", headers},
		{"[]byte values", amqp.Table{"traceparent": []byte(wantTP)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := prop.Extract(context.Background(), HeaderCarrier(tt.headers))
			got := trace.SpanContextFromContext(ctx)
			if !got.Equal(sc) {
				t.Errorf("extracted %+v, want %+v", got, sc)
			}
		})
	}
}

// A message names its writer in kv.WriterHeader, only when there is one,
// and its signature covers it.
func TestMessageNamesItsWriter(t *testing.T) {
	keys, err := msgsig.ParseKeys("a-key-of-at-least-thirty-two-bytes-long")
	if err != nil {
		t.Fatal(err)
	}
	op := kv.Op{Kind: kv.KindPut, Key: "k", Value: "v", Version: kv.NewVersion(time.Now()), WrittenBy: "alice"}
	msg, err := Message(op, keys)
	if err != nil {
		t.Fatal(err)
	}
	h := HeaderCarrier(msg.Headers)
	if got := h.Get(kv.WriterHeader); got != "alice" {
		t.Errorf("%s = %q, want alice", kv.WriterHeader, got)
	}
	if err := keys.Verify(string(op.Kind), "mallory", msg.Body, h.Get(msgsig.KeyIDHeader), h.Get(msgsig.SignatureHeader)); err == nil {
		t.Errorf("the signature holds for another writer")
	}
	op.WrittenBy = ""
	if msg, _ := Message(op, keys); HeaderCarrier(msg.Headers).Get(kv.WriterHeader) != "" {
		t.Errorf("a message with no writer names one: %v", msg.Headers)
	}
}
