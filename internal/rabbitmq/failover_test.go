package rabbitmq_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/nettest"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// twoNodes returns a copy of cfg with two broker addresses, each a proxy to
// the test broker, so that the test can make the first die. (cfg itself
// stays on the broker, for rabbittest's helpers.)
func twoNodes(t *testing.T, cfg rabbitmq.Config) (rabbitmq.Config, *nettest.Proxy) {
	t.Helper()
	u, err := url.Parse(cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	first, second := nettest.NewProxy(t, u.Host), nettest.NewProxy(t, u.Host)
	at := func(p *nettest.Proxy) string { v := *u; v.Host = p.Addr(); return v.String() }
	cfg.URL = at(first) + "," + at(second)
	return cfg, first
}

func TestConnectsToTheFirstBrokerThatAnswers(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	cfg.URL = "amqp://guest:guest@127.0.0.1:1/," + cfg.URL
	p := mustPublisher(t, cfg)
	if err := p.Publish(context.Background(), kv.Op{Kind: kv.KindPut, Key: "k", Value: "v", Version: kv.NewVersion(time.Now())}); err != nil {
		t.Fatalf("Publish with the first broker dead: %v", err)
	}
	src, err := rabbitmq.NewSource(cfg, 10, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := src.Open(context.Background())
	if err != nil {
		t.Fatalf("Open with the first broker dead: %v", err)
	}
	defer s.Close()
	if d := take(t, s, 1); d[0].Queue != cfg.QueueAdd {
		t.Errorf("delivery from %s, want %s", d[0].Queue, cfg.QueueAdd)
	}
}

// TestPublisherMovesToTheNextBroker: when the node it is connected to dies,
// the publisher moves to the next address by itself; meanwhile a publish
// fails promptly with kv.ErrUnavailable, never hangs, and once one is
// confirmed again the message is really on the broker.
func TestPublisherMovesToTheNextBroker(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	two, first := twoNodes(t, cfg)
	p := mustPublisher(t, two)
	publish := func() error {
		return p.Publish(context.Background(), kv.Op{Kind: kv.KindPut, Key: "k", Value: "v", Version: kv.NewVersion(time.Now())})
	}
	if err := publish(); err != nil {
		t.Fatalf("Publish before the cut: %v", err)
	}
	first.Cut()
	cut := time.Now()
	confirmed := 1
	for {
		began := time.Now()
		err := publish()
		if took := time.Since(began); took > cfg.PublishTimeout+time.Second {
			t.Fatalf("a publish took %s after the node died, beyond RABBITMQ_PUBLISH_TIMEOUT %s", took, cfg.PublishTimeout)
		}
		if err == nil {
			confirmed++
			break
		}
		if !errors.Is(err, kv.ErrUnavailable) {
			t.Fatalf("Publish after the cut = %v, want success or kv.ErrUnavailable", err)
		}
		if time.Since(cut) > 20*time.Second {
			t.Fatalf("the publisher did not move to the second broker within 20s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("first confirm on the second broker %s after the cut", time.Since(cut).Round(time.Millisecond))
	rabbittest.WaitCount(t, cfg, cfg.QueueAdd, confirmed, 10*time.Second)
}

// TestRunnerMovesToTheNextBroker: the consumer's source opens its next
// session on the next address, and what was delivered but not settled on
// the dead one comes again.
func TestRunnerMovesToTheNextBroker(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	two, first := twoNodes(t, cfg)
	rabbittest.Declare(t, cfg)
	var mu sync.Mutex
	seen := map[string]int{}
	hold := make(chan struct{})
	startRunner(t, two, handlerFunc(func(_ context.Context, b []consumer.Message) ([]consumer.Result, error) {
		mu.Lock()
		for _, m := range b {
			seen[string(m.Body)]++
		}
		n := len(seen)
		mu.Unlock()
		if n == 1 {
			<-hold // the first message stays in hand while its node dies
		}
		return make([]consumer.Result, len(b)), nil
	}))
	rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, []byte("before"))
	waitFor(t, 10*time.Second, "the first delivery", func() bool { mu.Lock(); defer mu.Unlock(); return seen["before"] == 1 })
	first.Cut()
	close(hold)
	rabbittest.PublishRaw(t, cfg, cfg.QueueAdd, []byte("after"))
	waitFor(t, 20*time.Second, "the consumer on the second broker", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["after"] >= 1 && seen["before"] >= 2
	})
	rabbittest.WaitCount(t, cfg, cfg.QueueAdd, 0, 10*time.Second)
}
