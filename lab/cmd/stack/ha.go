package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// topologyFile records, in the stack's directory, which topology up
// started there: down, status and logs act on it.
func topologyFile(dir string) string { return filepath.Join(dir, "topology") }

func recordedTopology(dir string) string {
	b, err := os.ReadFile(topologyFile(dir))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// startsATopology tells the commands that start the topology the settings
// ask for, rather than act on the one that runs.
func startsATopology(cmd string) bool {
	switch cmd {
	case "up", "run", "render", "env", "jaeger", "services":
		return true
	}
	return false
}

// upTarget is the make target that starts a topology.
func upTarget(topology string) string {
	if topology == "ha" {
		return "make up-ha"
	}
	return "make up"
}

// claimTopology lets up go on only when this topology may run: when the
// stack's supervisord runs, it must be running this topology (up is then
// idempotent); when it does not, no port of the topology may be taken
// (the other topology, or a stack of another KV_STACK_DIR, on the same
// ports). It records the topology.
func (c *cli) claimTopology(ctx context.Context) error {
	want := c.s.Get("KV_TOPOLOGY")
	if c.stack.Supervisor().Running(ctx) {
		ran := recordedTopology(c.s.Dir)
		if ran == "" {
			ran = "single" // recorded since the HA topology exists
		}
		if ran != want {
			return fmt.Errorf("the %s topology runs in %s, on the same edge and observability ports: stop it first (make down), then %s", ran, c.s.Dir, upTarget(want))
		}
	} else {
		for _, p := range c.stack.Programs {
			if p.Addr == "" {
				continue
			}
			if conn, err := net.DialTimeout("tcp", p.Addr, 300*time.Millisecond); err == nil {
				conn.Close()
				return fmt.Errorf("%s's address %s is taken, and the stack of %s does not run: another stack runs on these ports (stop it with its own make down, or give this one other ports)", p.Name, p.Addr, c.s.Dir)
			}
		}
	}
	if err := os.MkdirAll(c.s.Dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(topologyFile(c.s.Dir), []byte(want+"\n"), 0o644)
}

// withHA makes the stack the HA topology: its engines' nodes first (the
// RabbitMQ and Redis nodes and etcd, then each PostgreSQL node's Patroni),
// then, once the clusters are formed and migrated, the rest, the backup
// scheduler among them.
func (c *cli) withHA() {
	ha := engines.ForHA(c.s, filepath.Join(c.s.Dir, "engines"))
	c.ha = &ha
	programs := ha.Programs()
	last := 0
	for _, p := range programs {
		last = max(last, p.Priority)
	}
	// Its PostgreSQL nodes archive with pgBackRest: the scheduler backs
	// the cluster up, from its primary.
	c.stack.Programs = append(append(programs, c.stack.Programs...), backupsProgram(c.s))
	formed := false
	c.stack.Before = func(ctx context.Context, priority int) error {
		if priority <= last || formed {
			return nil
		}
		formed = true
		started := time.Now()
		if err := ha.Form(ctx); err != nil {
			return err
		}
		fmt.Fprintf(c.log, "==> clusters whole in %s: RabbitMQ %d nodes, Redis %d nodes, PostgreSQL primary answers\n",
			time.Since(started).Round(100*time.Millisecond), len(ha.RabbitMQ.Nodes), len(ha.Redis.Ports))
		return c.migrate(ctx)
	}
}

// haStatus prints the clusters' states: the PostgreSQL members as Patroni
// lists them (leader, sync_standby, their state, timeline and lag), each
// Redis node's role, the RabbitMQ members running. It returns false when
// one is not whole (for PostgreSQL: no running leader with a synchronous
// standby caught up).
func (c *cli) haStatus(ctx context.Context) bool {
	ok := true
	line := "patroni does not answer"
	if members, err := c.ha.Postgres.Members(ctx); err != nil {
		line += ": " + err.Error()
	} else {
		line = engine.MembersLine(members)
	}
	if err := c.ha.Postgres.Synchronous(ctx); err != nil {
		ok = false
		line += " — not synchronous"
	}
	fmt.Printf("\npostgresql    %s\n", line)
	var roles []string
	for i, n := range c.ha.Redis.Nodes() {
		roles = append(roles, fmt.Sprintf("redis%d %s", i+1, redisRole(ctx, n)))
	}
	fmt.Printf("redis         %s\n", strings.Join(roles, ", "))
	running, err := rabbitMembers(ctx, c.ha.RabbitMQ)
	if err != nil || len(running) != len(c.ha.RabbitMQ.Nodes) {
		ok = false
	}
	fmt.Printf("rabbitmq      %d of %d members running: %s %v\n", len(running), len(c.ha.RabbitMQ.Nodes), strings.Join(running, " "), orNil(err))
	return ok
}

// redisRole is a node's ROLE (master, slave), asked as the stack's checks
// ask (its default user, over TLS), or DOWN.
func redisRole(ctx context.Context, n *engine.Redis) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	rdb, err := n.Client()
	if err != nil {
		return "DOWN (" + err.Error() + ")"
	}
	defer rdb.Close()
	v, err := rdb.Do(ctx, "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return "DOWN"
	}
	role, _ := v[0].(string)
	return role
}

// rabbitMembers asks the first node that answers which members run.
func rabbitMembers(ctx context.Context, mq *engine.RabbitMQCluster) ([]string, error) {
	var errs []error
	for _, n := range mq.Nodes {
		running, err := n.RunningNodes(ctx)
		if err == nil {
			return running, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func orNil(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}
