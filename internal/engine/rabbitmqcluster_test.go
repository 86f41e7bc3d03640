package engine_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/engine"
)

// The nodes of a cluster are named apart, listen apart, keep their data
// apart and list each other as peers.
func TestNewRabbitMQCluster(t *testing.T) {
	c := engine.NewRabbitMQCluster("mq", "kvha", "/d", []int{1, 2, 3, 4, 5, 6, 7, 8, 9})
	if got, want := c.Names(), []string{"mq1", "mq2", "mq3"}; !slices.Equal(got, want) {
		t.Errorf("programs %v, want %v", got, want)
	}
	n2 := c.Nodes[1]
	if n2.Node != "kvha2@localhost" || n2.Port != 4 || n2.DistPort != 5 || n2.MetricsPort != 6 || n2.Dir != "/d/mq2" {
		t.Errorf("node 2: %+v", *n2)
	}
	if want := []string{"kvha1@localhost", "kvha3@localhost"}; !slices.Equal(n2.Peers, want) {
		t.Errorf("node 2's peers %v, want %v", n2.Peers, want)
	}
	if want := "amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:4/,amqp://guest:guest@127.0.0.1:7/"; c.URL() != want {
		t.Errorf("URL %s, want %s", c.URL(), want)
	}
	conf := n2.Config()
	for i, node := range []string{"kvha2@localhost", "kvha1@localhost", "kvha3@localhost"} {
		if want := "classic_config.nodes." + string(rune('1'+i)) + " = " + node; !strings.Contains(conf, want) {
			t.Errorf("node 2's config lacks %q:\n%s", want, conf)
		}
	}
}

// Three private nodes form one cluster at first boot, and a quorum queue
// declared on one is on all three. (Killing and stopping nodes is
// enginetest.RabbitMQCluster's, tested where it is used: internal/rabbitmq.)
func TestRabbitMQClusterForms(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three RabbitMQ nodes; not run with -short (make test runs it)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(4*time.Minute))
	defer cancel()
	ports, err := engine.FreePorts(3 * engine.PortsPerNode)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvengine-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := engine.NewRabbitMQCluster("rabbitmq", "kvcluster-"+strings.TrimPrefix(dir, os.TempDir()+"/kvengine-cluster-")+"-", dir, ports)
	started := time.Now()
	p, err := engine.Start(ctx, dir, testLog{t}, c.Engines()...)
	if err != nil {
		t.Fatalf("starting three private RabbitMQ nodes (needs supervisor and rabbitmq-server: make setup-all): %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	answering := time.Since(started)
	if err := c.Form(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("three nodes answering %s after the start, one cluster after %s",
		answering.Round(100*time.Millisecond), time.Since(started).Round(100*time.Millisecond))

	conn, err := amqp.Dial(c.Nodes[0].URL())
	if err != nil {
		t.Fatalf("AMQP to node 1: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		t.Fatalf("declare a quorum queue: %v", err)
	}
	for _, n := range c.Nodes {
		if q, err := n.Queues(ctx); err != nil || q == nil {
			t.Errorf("list_queues on %s: %v", n.Node, err)
		} else if _, ok := q["q"]; !ok {
			t.Errorf("node %s does not list the quorum queue: %v", n.Node, q)
		}
	}

}
