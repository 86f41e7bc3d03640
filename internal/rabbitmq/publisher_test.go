package rabbitmq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// testLog writes the package's logs into the test's output.
func testLog(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).With().Timestamp().Logger()
}

// mustPublisher starts a publisher, waits until it is connected, and closes
// it when the test ends.
func mustPublisher(t *testing.T, cfg rabbitmq.Config) *rabbitmq.Publisher {
	t.Helper()
	return mustPublisherWith(t, cfg, rabbittest.Keys(t))
}

func mustPublisherWith(t *testing.T, cfg rabbitmq.Config, keys *msgsig.Keys) *rabbitmq.Publisher {
	t.Helper()
	p, err := rabbitmq.NewPublisher(cfg, keys, testLog(t))
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatalf("publisher not connected to %s: %v", cfg.RedactedURL(), err)
	}
	return p
}

func TestPublishMessageProperties(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	keys := rabbittest.Keys(t)
	p := mustPublisherWith(t, cfg, keys)

	now := time.Now()
	tests := []struct {
		name  string
		op    kv.Op
		queue string
	}{
		{"put", kv.Op{Kind: kv.KindPut, Key: "k1", Value: "v1", Version: kv.NewVersion(now)}, cfg.QueueAdd},
		{"delete", kv.Op{Kind: kv.KindDelete, Key: "k2", Version: kv.NewVersion(now)}, cfg.QueueDel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Publish(context.Background(), tt.op); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			d, ok := rabbittest.Get(t, cfg, tt.queue)
			if !ok {
				t.Fatalf("queue %s is empty after a confirmed publish", tt.queue)
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"delivery mode", d.DeliveryMode, amqp.Persistent},
				{"content type", d.ContentType, "application/json"},
				{"message id", d.MessageId, tt.op.Version.OpID.String()},
				{"timestamp (s)", d.Timestamp.Unix(), tt.op.Version.Time.Unix()},
				{"type", d.Type, string(tt.op.Kind)},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
			carrier := rabbitmq.HeaderCarrier(d.Headers)
			if err := keys.Verify(string(tt.op.Kind), carrier.Get(kv.WriterHeader), d.Body, carrier.Get(msgsig.KeyIDHeader), carrier.Get(msgsig.SignatureHeader)); err != nil {
				t.Errorf("the message's signature headers (%v): %v", d.Headers, err)
			}
			got, err := kv.DecodeMessage(tt.op.Kind, d.Body, kv.DefaultLimits())
			if err != nil {
				t.Fatalf("DecodeMessage(%s): %v", d.Body, err)
			}
			if got.Key != tt.op.Key || got.Value != tt.op.Value || got.Version.Compare(tt.op.Version) != 0 {
				t.Errorf("body decodes to %+v, want %+v", got, tt.op)
			}
		})
	}
}

func TestPublishUnknownKindIsInvalid(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	p := mustPublisher(t, cfg)
	err := p.Publish(context.Background(), kv.Op{Kind: "rename", Key: "k", Version: kv.NewVersion(time.Now())})
	if !errors.Is(err, kv.ErrInvalid) {
		t.Errorf("Publish(unknown kind) = %v, want kv.ErrInvalid", err)
	}
}

func TestPublishConcurrentAllConfirmed(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	cfg.PublishChannels = 2
	p := mustPublisher(t, cfg)
	const n = 200
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- p.Publish(context.Background(), kv.Op{Kind: kv.KindPut, Key: "k", Value: string(rune('a' + i%26)), Version: kv.NewVersion(time.Now())})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	if got := rabbittest.Count(t, cfg, cfg.QueueAdd); got != n {
		t.Errorf("queue holds %d messages after %d confirmed publishes", got, n)
	}
}

func TestPublishUnreachableBroker(t *testing.T) {
	cfg := rabbitmq.DefaultConfig()
	cfg.URL = "amqp://guest:guest@127.0.0.1:1/"
	cfg.PublishTimeout = time.Second
	p, err := rabbitmq.NewPublisher(cfg, rabbittest.Keys(t), testLog(t))
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	defer p.Close()

	op := kv.Op{Kind: kv.KindPut, Key: "k", Value: "v", Version: kv.NewVersion(time.Now())}
	start := time.Now()
	err = p.Publish(context.Background(), op)
	if took := time.Since(start); took > cfg.PublishTimeout {
		t.Errorf("Publish took %s, want at most the %s timeout", took, cfg.PublishTimeout)
	}
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Publish = %v, want kv.ErrUnavailable", err)
	}
	if err := p.Ready(context.Background()); !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Ready = %v, want kv.ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.WaitReady(ctx); !errors.Is(err, kv.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady = %v, want unavailable and deadline exceeded", err)
	}
}

func TestPublishAfterClose(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	p := mustPublisher(t, cfg)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err := p.Publish(context.Background(), kv.Op{Kind: kv.KindDelete, Key: "k", Version: kv.NewVersion(time.Now())})
	if !errors.Is(err, rabbitmq.ErrClosed) || !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Publish after Close = %v, want ErrClosed wrapping kv.ErrUnavailable", err)
	}
}
