package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RedisCluster is a private Redis Cluster: one redis-server in cluster mode
// per port (six make three masters with one replica each), each node an
// Engine of its own (program NAME1…NAMEn) under the same supervisor, and
// Form, which creates the cluster once every node answers.
//
// With engine.Start (tests):
//
//	c := &engine.RedisCluster{Ports: ports, Dir: dir}
//	p, err := engine.Start(ctx, dir, log, c.Engines()...)
//	err = c.Form(ctx) // REDIS_ADDR=strings.Join(c.Addrs(), ",")
//
// In a supervisor.Stack: the nodes' programs (priority 1) among the others,
// and c.Form in the stack's Before hook for the next priority, so that
// nothing that uses the cluster starts before it is formed.
//
// Nodes keep nothing on disk but their nodes.conf (it is a cache): a node
// killed and restarted rejoins the cluster with its identity, empty. A
// node that has been in the cluster waits RestartDelay before it starts
// again, longer than the failure detection, so that a killed master is
// replaced by its replica (promoted) and comes back as the new master's
// replica, instead of coming back an empty master whose replica would
// then copy its emptiness: Redis' documentation warns against masters
// without persistence that restart by themselves.
type RedisCluster struct {
	Name     string // the programs' name prefix (default "redis-cluster")
	Ports    []int  // one node per port
	Replicas int    // per master (default 1)
	Dir      string // node i (from 1) keeps its nodes.conf in Dir/NAMEi
	LogDir   string // node i's output goes to LogDir/NAMEi.log (default its dir)
	// NodeTimeout is cluster-node-timeout (default 3 s, not Redis' 15 s:
	// a master is replaced about 5 s after it dies).
	NodeTimeout time.Duration
	// RestartDelay is how long a node that has been in the cluster waits
	// before it starts again (default three node timeouts).
	RestartDelay time.Duration
	// Users are every node's ACL users (Redis.Users).
	Users []RedisUser
	// TLS, when set, is what every node serves on its port of TLSPorts
	// (same order as Ports), beside its plain-text port. The cluster then
	// runs over TLS (its bus, replication, and the addresses CLUSTER SLOTS
	// gives a TLS client); a plain-text client is still given the nodes'
	// plain-text ports.
	TLS      *TLS
	TLSPorts []int
	// TLSOnly makes every node serve TLS alone, on its port of Ports (no
	// TLSPorts, no plain text): its clients, its bus and its replication.
	TLSOnly bool
	// Password is every node's default user's (Redis.Password): Form's
	// redis-cli and the checks here use that user. Replication is the
	// user replicas authenticate to their master as (Redis.Replication).
	Password    string
	Replication RedisUser
	// BusPorts, when set, are the nodes' cluster bus ports (same order as
	// Ports); by default each is its node's port + 10000 (its TLS port's
	// with TLS), a port nobody reserved for it.
	BusPorts []int
}

func (c *RedisCluster) prefix() string {
	if c.Name == "" {
		return "redis-cluster"
	}
	return c.Name
}

func (c *RedisCluster) replicas() int {
	if c.Replicas == 0 {
		return 1
	}
	return c.Replicas
}

func (c *RedisCluster) nodeTimeout() time.Duration {
	if c.NodeTimeout == 0 {
		return 3 * time.Second
	}
	return c.NodeTimeout
}

func (c *RedisCluster) restartDelay() time.Duration {
	if c.RestartDelay == 0 {
		return 3 * c.nodeTimeout()
	}
	return c.RestartDelay
}

// Nodes are the cluster's nodes, in the order of Ports.
func (c *RedisCluster) Nodes() []*Redis {
	nodes := make([]*Redis, len(c.Ports))
	for i, port := range c.Ports {
		name := fmt.Sprintf("%s%d", c.prefix(), i+1)
		n := &Redis{Name: name, Port: port, Dir: filepath.Join(c.Dir, name), cluster: c, Users: c.Users,
			Password: c.Password, Replication: c.Replication}
		switch {
		case c.TLS != nil && c.TLSOnly:
			n.TLS, n.TLSOnly = c.TLS, true
		case c.TLS != nil:
			n.TLS, n.TLSPort = c.TLS, c.TLSPorts[i]
		}
		if c.BusPorts != nil {
			n.busPort = c.BusPorts[i]
		}
		if c.LogDir != "" {
			n.Log = filepath.Join(c.LogDir, name+".log")
		}
		nodes[i] = n
	}
	return nodes
}

// Engines are the nodes, for engine.Start or a stack's programs.
func (c *RedisCluster) Engines() []Engine {
	var es []Engine
	for _, n := range c.Nodes() {
		es = append(es, n)
	}
	return es
}

// Addrs are the nodes' host:port, the seeds a cluster client is given.
func (c *RedisCluster) Addrs() []string {
	var addrs []string
	for _, p := range c.Ports {
		addrs = append(addrs, addr(p))
	}
	return addrs
}

// Node is the node listening on addr (host:port, its plain-text or its TLS
// port), or nil.
func (c *RedisCluster) Node(address string) *Redis {
	for _, n := range c.Nodes() {
		if n.Addr() == address || (n.TLS != nil && addr(n.TLSPort) == address) {
			return n
		}
	}
	return nil
}

// clusterCommand is a cluster node's command line: redis-server in the
// foreground, in cluster mode, with no snapshot nor append-only file, run
// by sh when its nodes.conf exists only after RestartDelay.
func (r *Redis) clusterCommand(port int) []string {
	c := r.cluster
	nodesConf := filepath.Join(r.Dir, "nodes.conf")
	server := []string{"redis-server", r.confFile(), "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dir", r.Dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
		"--cluster-enabled", "yes", "--cluster-config-file", nodesConf,
		"--cluster-node-timeout", strconv.FormatInt(c.nodeTimeout().Milliseconds(), 10),
		// A replica takes over however long it was cut off from its
		// master: the data is a cache, an old copy beats none.
		"--cluster-replica-validity-factor", "0",
		// The other masters keep serving their slots while one shard has
		// none (the default stops the whole cluster).
		"--cluster-require-full-coverage", "no",
		// A replica's full sync starts at once (it waits 5 s by default for
		// more replicas to share the transfer).
		"--repl-diskless-sync-delay", "0"}
	if r.TLS != nil {
		server = append(server, "--tls-cluster", "yes", "--tls-replication", "yes")
	}
	if r.busPort != 0 {
		server = append(server, "--cluster-port", strconv.Itoa(r.busPort))
	}
	delay := strconv.FormatFloat(c.restartDelay().Seconds(), 'f', -1, 64)
	script := `if [ -e "$1" ]; then sleep "$2"; fi; shift 2; exec "$@"`
	return append([]string{"sh", "-c", script, "sh", nodesConf, delay}, server...)
}

// Form creates the cluster with redis-cli --cluster create when no node
// holds a slot yet, then waits (at most StartTimeout) until every node
// reports cluster_state:ok and knows every other, and each master has its
// replicas, synced. It is idempotent: on a formed cluster (a stack brought
// up again, a node back after a kill) it only waits. Every node must be
// running. A node that lost its nodes.conf is a stranger to the others:
// add it back by hand (redis-cli --cluster add-node … --cluster-slave).
func (c *RedisCluster) Form(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout())
	defer cancel()
	assigned, err := c.slotsAssigned(ctx)
	if err != nil {
		return err
	}
	if !assigned {
		args := append([]string{"--cluster", "create"}, c.Addrs()...)
		if c.TLS != nil && !c.TLSOnly {
			// The nodes meet on the ports they announce: their TLS ports.
			args = []string{"--tls", "--cacert", c.TLS.CA, "--cluster", "create"}
			for _, p := range c.TLSPorts {
				args = append(args, addr(p))
			}
		}
		if c.TLSOnly {
			args = append([]string{"--tls", "--cacert", c.TLS.CA}, args...)
		}
		args = append(args, "--cluster-replicas", strconv.Itoa(c.replicas()), "--cluster-yes")
		cmd := exec.CommandContext(ctx, "redis-cli", args...)
		if c.Password != "" {
			// The default user's password, where ps does not show it.
			cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+c.Password)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("redis-cli --cluster create: %w: %s", err, lastLines(string(out), 5))
		}
	}
	return c.WaitHealthy(ctx)
}

// slotsAssigned reports whether the cluster was created: a node that
// answers holds slots. It fails when no node answers.
func (c *RedisCluster) slotsAssigned(ctx context.Context) (bool, error) {
	var errs []error
	for _, n := range c.Nodes() {
		info, err := n.fields(ctx, "cluster", "info")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if info["cluster_slots_assigned"] != "0" {
			return true, nil
		}
	}
	if len(errs) == len(c.Ports) {
		return false, fmt.Errorf("redis cluster: no node answers: %w", errors.Join(errs...))
	}
	if len(errs) > 0 {
		// Some node may hold the slots: creating now would split the cluster.
		return false, fmt.Errorf("redis cluster: no slot on the nodes that answer, and some do not: %w", errors.Join(errs...))
	}
	return false, nil
}

// WaitHealthy waits until the cluster is whole: every node running, in
// cluster_state:ok and knowing all the others, every slot served, and
// len(Ports)/(Replicas+1) masters each with Replicas replicas whose link to
// it is up (so after a failover, until the old master is back as a synced
// replica). The error names what was missing last.
func (c *RedisCluster) WaitHealthy(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.healthy(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster %s not healthy: %w", strings.Join(c.Addrs(), ","), err)
		case <-tick.C:
		}
	}
}

func (c *RedisCluster) healthy(ctx context.Context) error {
	masters := 0
	for _, n := range c.Nodes() {
		a := n.Addr()
		info, err := n.fields(ctx, "cluster", "info")
		if err != nil {
			return err
		}
		if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != "16384" ||
			info["cluster_known_nodes"] != strconv.Itoa(len(c.Ports)) {
			return fmt.Errorf("%s: cluster_state %s, slots ok %s, known nodes %s", a,
				info["cluster_state"], info["cluster_slots_ok"], info["cluster_known_nodes"])
		}
		if err := c.viewWhole(ctx, n); err != nil {
			return err
		}
		repl, err := n.fields(ctx, "info", "replication")
		if err != nil {
			return err
		}
		switch repl["role"] {
		case "master":
			masters++
			if repl["connected_slaves"] != strconv.Itoa(c.replicas()) {
				return fmt.Errorf("master %s: %s replicas connected", a, repl["connected_slaves"])
			}
		default:
			if repl["master_link_status"] != "up" || repl["master_sync_in_progress"] != "0" {
				return fmt.Errorf("replica %s: link %s, sync in progress %s", a, repl["master_link_status"], repl["master_sync_in_progress"])
			}
		}
	}
	if want := len(c.Ports) / (c.replicas() + 1); masters != want {
		return fmt.Errorf("%d masters, want %d", masters, want)
	}
	return nil
}

// viewWhole checks the cluster as the node at address sees it (its gossip
// may lag behind the nodes' own state): every node connected, none
// failing, masters and replicas in the numbers wanted.
func (c *RedisCluster) viewWhole(ctx context.Context, n *Redis) error {
	address := n.Addr()
	rdb, err := n.Client()
	if err != nil {
		return err
	}
	defer rdb.Close()
	text, err := rdb.ClusterNodes(ctx).Result()
	if err != nil {
		return fmt.Errorf("%s: CLUSTER NODES: %w", address, err)
	}
	masters := 0
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return fmt.Errorf("%s: CLUSTER NODES line %q", address, line)
		}
		flags := "," + f[2] + ","
		if strings.Contains(flags, ",fail") || f[7] != "connected" {
			return fmt.Errorf("%s sees %s as %s, %s", address, f[1], f[2], f[7])
		}
		if strings.Contains(flags, ",master,") {
			masters++
		}
	}
	if want := len(c.Ports) / (c.replicas() + 1); masters != want {
		return fmt.Errorf("%s sees %d masters, want %d", address, masters, want)
	}
	return nil
}

// MasterOf is the node that serves key's slot now, as most of the nodes
// that answer see it (a node just restarted may believe for a moment that
// it still is the master it was).
func (c *RedisCluster) MasterOf(ctx context.Context, key string) (*Redis, error) {
	votes := map[string]int{}
	var best string
	var lastErr error
	for _, n := range c.Nodes() {
		m, err := masterSeenBy(ctx, n, key)
		if err != nil {
			lastErr = err
			continue
		}
		votes[m]++
		if votes[m] > votes[best] {
			best = m
		}
	}
	if best == "" {
		return nil, fmt.Errorf("master of %q: no node knows: %w", key, lastErr)
	}
	if n := c.Node(best); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("master of %q is %s, not a node of this cluster", key, best)
}

// ReplicaOf is master's replica (the first, with several), as master
// reports it.
func (c *RedisCluster) ReplicaOf(ctx context.Context, master *Redis) (*Redis, error) {
	repl, err := master.fields(ctx, "info", "replication")
	if err != nil {
		return nil, err
	}
	// slave0:ip=127.0.0.1,port=7004,state=online,offset=…,lag=…
	for _, f := range strings.Split(repl["slave0"], ",") {
		if port, ok := strings.CutPrefix(f, "port="); ok {
			if n, err := strconv.Atoi(port); err == nil && c.Node(addr(n)) != nil {
				return c.Node(addr(n)), nil
			}
		}
	}
	return nil, fmt.Errorf("%s has no replica of this cluster (role %s, slave0 %q)", master.Name, repl["role"], repl["slave0"])
}

// masterSeenBy is the address of the master online that serves key's slot,
// as the node at address sees it.
func masterSeenBy(ctx context.Context, n *Redis, key string) (string, error) {
	address := n.Addr()
	rdb, err := n.Client()
	if err != nil {
		return "", err
	}
	defer rdb.Close()
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", fmt.Errorf("%s: CLUSTER KEYSLOT: %w", address, err)
	}
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("%s: CLUSTER SHARDS: %w", address, err)
	}
	for _, s := range shards {
		for _, r := range s.Slots {
			if slot < r.Start || slot > r.End {
				continue
			}
			for _, n := range s.Nodes {
				if n.Role == "master" && n.Health == "online" {
					if n.Port == 0 { // a node that serves TLS alone
						return addr(int(n.TLSPort)), nil
					}
					return addr(int(n.Port)), nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s: no master online serves slot %d", address, slot)
}

// fields is the node's answer to a command that answers name:value lines
// (CLUSTER INFO, INFO section) as fields.
func (r *Redis) fields(ctx context.Context, args ...any) (map[string]string, error) {
	rdb, err := r.Client()
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	text, err := rdb.Do(ctx, args...).Text()
	if err != nil {
		return nil, fmt.Errorf("%s %v: %w", r.Addr(), args, err)
	}
	fields := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
