package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// RabbitMQCluster is RabbitMQ nodes listing each other as Peers: started
// together with blank data directories, they form one cluster at first
// boot (classic_config peer discovery; ~26 s for three nodes here). Each
// node is an Engine of its own, one program under the supervisor; Form
// then waits until every node sees every other one running.
//
//	c := engine.NewRabbitMQCluster("rabbitmq", "kvha", dir, ports) // 3 nodes: 9 ports
//	p, err := engine.Start(ctx, dir, log, c.Engines()...)
//	err = c.Form(ctx)                  // all three members, running
//	os.Setenv("RABBITMQ_URL", c.URL()) // every node, comma-separated
//
// Under a supervisor.Stack, give the nodes one priority (they must start
// together) and call Form from the stack's Before hook for the next one.
type RabbitMQCluster struct {
	Nodes []*RabbitMQ
}

// PortsPerNode is how many ports NewRabbitMQCluster takes for each node:
// AMQP, Erlang distribution, rabbitmq_prometheus, in that order.
const PortsPerNode = 3

// NewRabbitMQCluster describes len(ports)/PortsPerNode nodes: node i (from
// 1) is program NAMEi, Erlang node PREFIXi@localhost, its ports
// ports[3(i-1):3i] (AMQP, distribution, prometheus), its data in dir/NAMEi.
func NewRabbitMQCluster(name, prefix, dir string, ports []int) *RabbitMQCluster {
	n := len(ports) / PortsPerNode
	c := &RabbitMQCluster{}
	for i := range n {
		p := ports[PortsPerNode*i:]
		prog := fmt.Sprintf("%s%d", name, i+1)
		c.Nodes = append(c.Nodes, &RabbitMQ{
			Name: prog, Node: fmt.Sprintf("%s%d@localhost", prefix, i+1),
			Port: p[0], DistPort: p[1], MetricsPort: p[2], Dir: filepath.Join(dir, prog),
		})
	}
	for _, node := range c.Nodes {
		for _, other := range c.Nodes {
			if other != node {
				node.Peers = append(node.Peers, other.Node)
			}
		}
	}
	return c
}

// Engines are the nodes, for Start or a stack's programs.
func (c *RabbitMQCluster) Engines() []Engine {
	var es []Engine
	for _, n := range c.Nodes {
		es = append(es, n)
	}
	return es
}

// Names are the nodes' program names.
func (c *RabbitMQCluster) Names() []string {
	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.name())
	}
	return names
}

// URL lists every node's AMQP URL, comma-separated: what RABBITMQ_URL
// takes for a cluster.
func (c *RabbitMQCluster) URL() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.URL())
	}
	return strings.Join(urls, ",")
}

// Form waits until every node reports every member of the cluster as
// running (rabbitmqctl cluster_status), or ctx ends. Call it once the nodes
// answer (their AMQP port opens once a node has booted, in the cluster or
// not); it is idempotent, so it also tells that a cluster is whole again
// after a node came back. A node that booted as a cluster of its own (its
// data directory was not blank) never sees the others: the error names
// what each node sees.
func (c *RabbitMQCluster) Form(ctx context.Context) error {
	want := make([]string, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		want = append(want, n.Node)
	}
	slices.Sort(want)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		seen, err := c.membersSeen(ctx)
		if err == nil && c.whole(seen, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("RabbitMQ cluster %v not formed (%w): running members seen by each node: %v, last error: %v", want, ctx.Err(), seen, err)
		case <-tick.C:
		}
	}
}

func (c *RabbitMQCluster) whole(seen map[string][]string, want []string) bool {
	for _, n := range c.Nodes {
		if !slices.Equal(seen[n.Node], want) {
			return false
		}
	}
	return true
}

// membersSeen asks each node which members it sees running.
func (c *RabbitMQCluster) membersSeen(ctx context.Context) (map[string][]string, error) {
	seen := map[string][]string{}
	for _, n := range c.Nodes {
		running, err := n.RunningNodes(ctx)
		if err != nil {
			return seen, err
		}
		seen[n.Node] = running
	}
	return seen, nil
}

// RunningNodes is the cluster's members that the node sees running,
// sorted (itself included).
func (r *RabbitMQ) RunningNodes(ctx context.Context) ([]string, error) {
	out, err := r.ctl(ctx, "cluster_status", "--formatter", "json")
	if err != nil {
		return nil, err
	}
	var st struct {
		Running []string `json:"running_nodes"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("rabbitmqctl -n %s cluster_status: %w", r.Node, err)
	}
	slices.Sort(st.Running)
	return st.Running, nil
}

// ctl runs rabbitmqctl -n NODE -q args… with the node's environment and
// returns its output; its error quotes rabbitmqctl's stderr.
func (r *RabbitMQ) ctl(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-n", r.Node, "-q"}, args...)...)
	cmd.Env = os.Environ()
	for k, v := range r.env() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("rabbitmqctl -n %s %s: %w: %s", r.Node, args[0], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
