package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// maxConfirmGap is the target for the longest time without a
// confirm while the node a publisher is connected to dies.
const maxConfirmGap = 2 * time.Second

// clusterConfig is a private quorum topology on the three-node cluster,
// every node in RABBITMQ_URL.
func clusterConfig(t *testing.T) rabbitmq.Config {
	t.Helper()
	cfg := rabbittest.MustConfigAt(t, cluster.URL(t))
	cfg.QueueType = "quorum"
	return cfg
}

// TestCluster breaks the private three-node cluster, one way after the
// other, while the rest of the package runs (its start and its nodes'
// restarts take most of the package's time).
func TestCluster(t *testing.T) {
	t.Parallel()
	t.Run("kill -9 of the node of the publisher and consumer", testClusterSurvivesTheKillOfItsNode)
	t.Run("two nodes of three down", testClusterWithoutMajorityRefusesPromptly)
}

// confirms is what a publishing load saw: when each confirm came, and
// which keys were confirmed.
type confirms struct {
	mu      sync.Mutex
	at      []time.Time
	keys    []string
	slowest time.Duration // the longest Publish call, failed or not
	errs    int
	kinds   map[string]int // errors by their text less the message id
}

// load publishes puts from writers goroutines, each one after the other,
// as the API's handlers would, until stop is called, which returns once
// every writer has returned; every error must wrap kv.ErrUnavailable.
func load(t *testing.T, p *rabbitmq.Publisher, writers int) (c *confirms, stop func()) {
	c = &confirms{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				began := time.Now()
				err := p.Publish(context.Background(), kv.Op{Kind: kv.KindPut, Key: key, Value: "v", Version: kv.NewVersion(began)})
				c.record(key, time.Since(began), err)
				if err != nil && !errors.Is(err, kv.ErrUnavailable) {
					t.Errorf("Publish = %v, want nil or kv.ErrUnavailable", err)
				}
				if err != nil {
					time.Sleep(5 * time.Millisecond) // as a client's retry would
				}
			}
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { close(done) }); wg.Wait() }
	t.Cleanup(stop)
	return c, stop
}

func (c *confirms) record(key string, took time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slowest = max(c.slowest, took)
	if err != nil {
		c.errs++
		if c.kinds == nil {
			c.kinds = map[string]int{}
		}
		c.kinds[strings.Join(strings.Fields(err.Error())[3:], " ")]++
		return
	}
	c.at = append(c.at, time.Now())
	c.keys = append(c.keys, key)
}

func (c *confirms) count() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.at) }

// since is how many confirms came after t.
func (c *confirms) since(t time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, at := range c.at {
		if at.After(t) {
			n++
		}
	}
	return n
}

// longestGap is the longest time between two confirms in a row.
func (c *confirms) longestGap() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := slices.Clone(c.at)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	for i := 1; i < len(at); i++ {
		gap = max(gap, at[i].Sub(at[i-1]))
	}
	return gap
}

// testClusterSurvivesTheKillOfItsNode: a publisher and a consumer given
// the three nodes both connect to the first; kill -9 of that node (the
// quorum queue's leader too, declared from there) moves both to another
// node by themselves. The longest gap between two confirms stays under
// maxConfirmGap, and every confirmed message is consumed.
func testClusterSurvivesTheKillOfItsNode(t *testing.T) {
	cfg := clusterConfig(t)
	p := mustPublisher(t, cfg)
	var mu sync.Mutex
	handled := map[string]bool{}
	startRunner(t, cfg, handlerFunc(func(_ context.Context, b []consumer.Message) ([]consumer.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b {
			if op, err := kv.DecodeMessage(m.Kind, m.Body, kv.DefaultLimits()); err == nil {
				handled[op.Key] = true
			}
		}
		return make([]consumer.Result, len(b)), nil
	}))

	c, stop := load(t, p, 4)
	waitFor(t, 10*time.Second, "confirms before the kill", func() bool { return c.count() >= 200 })
	node := cluster.NodeOf(t, p.Broker())
	if node < 0 {
		t.Fatalf("the publisher is connected to %q, none of the cluster's nodes", p.Broker())
	}
	pid := cluster.Kill(t, node)
	killed := time.Now()
	waitFor(t, 30*time.Second, "confirms on another node", func() bool {
		return c.since(killed.Add(time.Second)) >= 200
	})
	stop()
	gap := c.longestGap()
	t.Logf("kill -9 of node %d (pid %d), the publisher's: the publisher moved to %s; %d confirmed, %d publishes failed, longest gap between two confirms %s, slowest Publish %s",
		node+1, pid, p.Broker(), c.count(), c.errs, gap.Round(time.Millisecond), c.slowest.Round(time.Millisecond))
	for kind, n := range c.kinds {
		t.Logf("%d publishes failed with: %s", n, kind)
	}
	if gap >= maxConfirmGap {
		t.Errorf("longest gap between two confirms %s, want < %s", gap, maxConfirmGap)
		// What each node said of the queue and of the others meanwhile.
		for _, n := range cluster.Nodes(t) {
			logs, _ := filepath.Glob(filepath.Join(n.Dir, "log", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				for _, line := range strings.Split(string(b), "\n") {
					if strings.Contains(line, cfg.QueueAdd+"'") || strings.Contains(line, "' down") || strings.Contains(line, "' up") {
						t.Logf("%s: %s", filepath.Base(l), line)
					}
				}
			}
		}
	}
	if c.slowest > cfg.PublishTimeout+time.Second {
		t.Errorf("a Publish took %s, beyond RABBITMQ_PUBLISH_TIMEOUT %s", c.slowest, cfg.PublishTimeout)
	}
	waitFor(t, 30*time.Second, "every confirmed message consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range c.keys {
			if !handled[k] {
				return false
			}
		}
		return true
	})
}

// testClusterWithoutMajorityRefusesPromptly: with two of the three nodes
// stopped, the queue has no majority, so no publish is confirmed: each
// fails with kv.ErrUnavailable within RABBITMQ_PUBLISH_TIMEOUT (a 503 at
// the API), never hangs, never succeeds. Once a majority is back, the same
// publisher is confirmed again.
func testClusterWithoutMajorityRefusesPromptly(t *testing.T) {
	cfg := clusterConfig(t)
	cfg.PublishTimeout = time.Second
	p := mustPublisher(t, cfg)
	publish := func(key string) error {
		return p.Publish(context.Background(), kv.Op{Kind: kv.KindPut, Key: key, Value: "v", Version: kv.NewVersion(time.Now())})
	}
	if err := publish("before"); err != nil {
		t.Fatalf("Publish with the cluster whole: %v", err)
	}
	node := cluster.NodeOf(t, p.Broker())
	var others []int
	for i := range enginetest.ClusterSize {
		if i != node {
			others = append(others, i)
		}
	}
	cluster.Stop(t, others...)
	for i := range 3 {
		began := time.Now()
		err := publish(fmt.Sprintf("minority-%d", i))
		took := time.Since(began)
		t.Logf("Publish with only node %d of 3 running: %v after %s", node+1, err, took.Round(time.Millisecond))
		if !errors.Is(err, kv.ErrUnavailable) {
			t.Errorf("Publish without a majority = %v, want kv.ErrUnavailable", err)
		}
		if took > cfg.PublishTimeout+500*time.Millisecond {
			t.Errorf("Publish without a majority took %s, want ≤ RABBITMQ_PUBLISH_TIMEOUT %s", took, cfg.PublishTimeout)
		}
	}
	cluster.Start(t, others...)
	back := time.Now()
	waitFor(t, 60*time.Second, "a confirm once the majority is back", func() bool { return publish("after") == nil })
	t.Logf("confirmed again %s after the two nodes answered", time.Since(back).Round(time.Millisecond))
}
