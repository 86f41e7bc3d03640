package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// chaosHAPorts are the ports of the HA campaign's private stack (make
// chaos-ha): below the kernel's ephemeral range (32768-60999), where
// engine.FreePorts never lands, apart from the single-node campaign's and
// the default stack's. A Redis node's cluster bus is its port + 10000.
var chaosHAPorts = map[string]string{
	"KV_NGINX_PORT": "31080", "KV_NGINX_STATUS_PORT": "31079", "KV_API1_PORT": "31081", "KV_API2_PORT": "31082", "KV_CONSUMER_PORT": "31090",
	"KV_API1_ADMIN_PORT": "31281", "KV_API2_ADMIN_PORT": "31282", "KV_CONSUMER_ADMIN_PORT": "31290",
	"KV_HA_RABBITMQ1_PORT": "31671", "KV_HA_RABBITMQ2_PORT": "31672", "KV_HA_RABBITMQ3_PORT": "31673",
	"KV_HA_RABBITMQ1_DIST_PORT": "31681", "KV_HA_RABBITMQ2_DIST_PORT": "31682", "KV_HA_RABBITMQ3_DIST_PORT": "31683",
	"KV_HA_RABBITMQ1_METRICS_PORT": "31691", "KV_HA_RABBITMQ2_METRICS_PORT": "31692", "KV_HA_RABBITMQ3_METRICS_PORT": "31693",
	"KV_HA_REDIS1_PORT": "21700", "KV_HA_REDIS2_PORT": "21701", "KV_HA_REDIS3_PORT": "21702",
	"KV_HA_REDIS4_PORT": "21703", "KV_HA_REDIS5_PORT": "21704", "KV_HA_REDIS6_PORT": "21705",
	"KV_HA_POSTGRES1_PORT": "31441", "KV_HA_POSTGRES2_PORT": "31442", "KV_HA_PATRONI1_PORT": "31443", "KV_HA_PATRONI2_PORT": "31444",
	"KV_HA_ETCD_PORT": "31479", "KV_HA_ETCD_PEER_PORT": "31480",
	// Not run by the campaign; shifted all the same.
	"PGPORT": "31432", "REDIS_PORT": "31379", "RABBITMQ_PORT": "31661", "RABBITMQ_DIST_PORT": "31662", "RABBITMQ_METRICS_PORT": "31663",
	"KV_PROMETHEUS_PORT": "31190", "KV_ALERTMANAGER_PORT": "31193", "KV_JAEGER_UI_PORT": "31686",
	"KV_JAEGER_OTLP_GRPC_PORT": "31317", "KV_JAEGER_OTLP_HTTP_PORT": "31318", "KV_JAEGER_QUERY_GRPC_PORT": "31685",
	"KV_JAEGER_HEALTH_PORT": "31133", "KV_JAEGER_METRICS_PORT": "31889", "KV_MTAIL_PORT": "31903", "KV_NGINX_EXPORTER_PORT": "31113",
	"KV_POSTGRES_EXPORTER_PORT": "31187", "KV_REDIS_EXPORTER_PORT": "31121", "KV_GRAFANA_PORT": "31300",
	"KV_HA_POSTGRES1_EXPORTER_PORT": "31188", "KV_HA_POSTGRES2_EXPORTER_PORT": "31189",
	"KV_HA_REDIS1_EXPORTER_PORT": "31122", "KV_HA_REDIS2_EXPORTER_PORT": "31123", "KV_HA_REDIS3_EXPORTER_PORT": "31124",
	"KV_HA_REDIS4_EXPORTER_PORT": "31125", "KV_HA_REDIS5_EXPORTER_PORT": "31126", "KV_HA_REDIS6_EXPORTER_PORT": "31127",
}

// haProcs are the HA topology's kvstack processes the campaign runs (no
// observability): two replicas, two consumers, nginx.
var haProcs = []string{"api1", "api2", "consumer", "consumer2", "nginx"}

// haPrivate is what the HA campaign's stack adds to a private one: its
// clusters (engines.ForHA), PostgreSQL's kept by Patroni on an etcd, as in
// make up-ha.
type haPrivate struct {
	engines.HA
	// brokerKilled is the RabbitMQ node the first broker fault killed:
	// the second kills another one.
	brokerKilled string
	// lost is the PostgreSQL node losePrimary took down, until startLost.
	lost string
}

// startHA starts the HA topology's engines and kvstack processes on the
// HA chaos ports under one supervisord tied to the campaign (data in
// engineDir, state in dir/stack); it forms the clusters and migrates
// before the kvstack processes start.
func startHA(ctx context.Context, root, dir, engineDir string, log io.Writer) (*private, error) {
	return startHAOn(ctx, root, dir, engineDir, log, chaosHAPorts)
}

// startHAOn is startHA on the given ports, with extra settings.
func startHAOn(ctx context.Context, root, dir, engineDir string, log io.Writer, ports map[string]string, extra ...string) (*private, error) {
	s, err := native.Load(root, chaosEnviron(ports, dir, append([]string{"KV_TOPOLOGY=ha"}, extra...)...))
	if err != nil {
		return nil, err
	}
	s.BinDir = filepath.Join(dir, "bin")
	ha := engines.ForHA(s, engineDir)
	if err := os.RemoveAll(engineDir); err != nil {
		return nil, err
	}
	started := time.Now()
	c := &private{s: s, ha: &haPrivate{HA: ha}}
	if err := native.Build(ctx, s, log); err != nil {
		return nil, err
	}
	if c.p, err = engine.Start(ctx, engineDir, log); err != nil {
		return c, err
	}
	st := c.p.Stack()
	st.Programs = append(ha.Programs(), native.Select(native.Processes(s), haProcs...)...)
	st.Before = c.haBefore(s, log)
	if _, err := st.Up(ctx); err != nil {
		return c, errors.Join(err, c.close())
	}
	fmt.Fprintf(log, "==> chaos: private HA stack up in %s: nginx %s (state %s, engines %s)\n",
		time.Since(started).Round(100*time.Millisecond), s.Get("NGINX_LISTEN"), s.Dir, engineDir)
	return c, nil
}

// haBefore prepares every node before the first engines (priority 1)
// start, and, once the last engines (the second PostgreSQL node's Patroni)
// run, forms the clusters, migrates and renders nginx's config before
// anything else starts.
func (c *private) haBefore(s *native.Settings, log io.Writer) func(context.Context, int) error {
	formed := false
	last := 0
	for _, p := range c.ha.Programs() {
		last = max(last, p.Priority)
	}
	return func(ctx context.Context, priority int) error {
		switch {
		case priority <= 1:
			return c.ha.Init(ctx)
		case priority <= last || formed:
			return nil
		}
		formed = true
		began := time.Now()
		if err := c.ha.Form(ctx); err != nil {
			return err
		}
		fmt.Fprintf(log, "==> chaos: clusters whole in %s\n", time.Since(began).Round(100*time.Millisecond))
		if err := native.Migrate(ctx, s, log); err != nil {
			return err
		}
		return native.WriteConfigs(ctx, s, nil, log)
	}
}

// chaosRateLimit is the edge's per-client rate in the campaign's stack,
// raised on purpose from the shipped one (NGINX_RATE_LIMIT, 500r/s): the
// load's writers and readers all come from 127.0.0.1, one client to nginx,
// and together send more than that; the campaign is about faults, not
// about the limit (lab/nginxtest proves it). The report says so.
const chaosRateLimit, chaosRateBurst = "100000r/s", "100000"

// chaosAPIRateLimit is the API's per-subject rate (KV_RATE_LIMIT, shipped
// 1000 a second, burst 2000, per replica) in the campaign's stack, raised
// for the same reason: the whole load is one subject. The report says so.
const chaosAPIRateLimit, chaosAPIRateBurst = "100000", "100000"

// chaosEnviron is the campaign's environment: the caller's, with the
// campaign's ports and state directory, its edge and API limits
// (chaosRateLimit, chaosAPIRateLimit),
// and every address derived from those ports whatever the caller's
// environment says.
func chaosEnviron(ports map[string]string, dir string, extra ...string) []string {
	environ := os.Environ()
	for k, v := range ports {
		environ = append(environ, k+"="+v)
	}
	environ = append(environ, "NGINX_RATE_LIMIT="+chaosRateLimit, "NGINX_RATE_BURST="+chaosRateBurst,
		"KV_RATE_LIMIT="+chaosAPIRateLimit, "KV_RATE_BURST="+chaosAPIRateBurst,
		"KV_STACK_DIR="+filepath.Join(dir, "stack"), "KV_STOP_TIMEOUT=10", "KV_STACK_TIMEOUT=60",
		"DATABASE_URL=", "KV_APP_DATABASE_URL=", "REDIS_ADDR=", "RABBITMQ_URL=", "KV_API_RABBITMQ_URL=", "KV_CONSUMER_RABBITMQ_URL=", "NGINX_LISTEN=", "NGINX_STATUS_LISTEN=", "NGINX_TLS_CERT=", "NGINX_TLS_KEY=", "KV_TLS_CA=", "API1_ADDR=", "API2_ADDR=",
		"API1_ADMIN_ADDR=", "API2_ADMIN_ADDR=", "CONSUMER_ADMIN_ADDR=",
		"POSTGRES_EXPORTER_DSN=", "REDIS_TLS_CA_FILE=", "RABBITMQ_TLS_CA_FILE=", "REDIS_USERNAME=", "REDIS_PASSWORD=",
		"KV_REDIS_EXPORTER_USERNAME=", "KV_REDIS_EXPORTER_PASSWORD=", "OTEL_TRACES_EXPORTER=none")
	return append(environ, extra...)
}

// whole tells whether the HA clusters are whole again: every RabbitMQ
// member running, the Redis Cluster with every node and slot, and a
// PostgreSQL leader with a synchronous standby caught up (Patroni's view).
func (h *haPrivate) whole(ctx context.Context) error {
	if err := h.Postgres.Synchronous(ctx); err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := h.Redis.WaitHealthy(rctx); err != nil {
		return fmt.Errorf("redis cluster: %w", err)
	}
	var errs []error
	for _, n := range h.RabbitMQ.Nodes {
		running, err := n.RunningNodes(ctx)
		if err == nil && len(running) == len(h.RabbitMQ.Nodes) {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s sees %v: %v", n.Program().Name, running, err))
	}
	return fmt.Errorf("rabbitmq cluster: %w", errors.Join(errs...))
}

// queues asks the first RabbitMQ node that answers for the queues' depths.
func (h *haPrivate) queues(ctx context.Context) (map[string]engine.QueueDepth, error) {
	var errs []error
	for _, n := range h.RabbitMQ.Nodes {
		q, err := n.Queues(ctx)
		if err == nil {
			return q, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// brokerOfAPI is the program of the RabbitMQ node api1's publisher is
// connected to, from api1's established connections (ss): each node
// listens on a port of its own.
func (c *private) brokerOfAPI(ctx context.Context) (string, error) {
	pid, err := c.p.Pid(ctx, "api1")
	if err != nil || pid == 0 {
		return "", fmt.Errorf("api1's pid: %d, %v", pid, err)
	}
	out, err := exec.CommandContext(ctx, "ss", "-tnpH", "state", "established").Output()
	if err != nil {
		return "", fmt.Errorf("ss: %w", err)
	}
	owned := regexp.MustCompile(`\S+:(\d+)\s+users:\(.*pid=` + strconv.Itoa(pid) + `,`)
	for _, m := range owned.FindAllSubmatch(out, -1) {
		port, _ := strconv.Atoi(string(m[1]))
		for _, n := range c.ha.RabbitMQ.Nodes {
			if n.Port == port {
				return n.Program().Name, nil
			}
		}
	}
	return "", fmt.Errorf("api1 (pid %d) has no connection to a RabbitMQ node", pid)
}

// killBroker kills -9 the RabbitMQ node api1 is connected to; second: a
// node other than the one the first broker fault killed.
func killBroker(second bool) *action {
	desc := "kill -9 the RabbitMQ node the API is connected to"
	if second {
		desc = "kill -9 another RabbitMQ node (the API's, or the next)"
	}
	return &action{desc, func(ctx context.Context, c *private) error {
		name, err := c.brokerOfAPI(ctx)
		if err != nil {
			return err
		}
		if second && name == c.ha.brokerKilled {
			names := c.ha.RabbitMQ.Names()
			name = names[(slices.Index(names, name)+1)%len(names)]
		}
		c.ha.brokerKilled = name
		return c.killNamed(ctx, name)
	}}
}

// killRedisMaster kills -9 the Redis master holding the first slot's keys
// (kv:… keys of every fault land on all three masters).
var killRedisMaster = &action{"kill -9 a Redis master", func(ctx context.Context, c *private) error {
	m, err := c.ha.Redis.MasterOf(ctx, "kv:chaos")
	if err != nil {
		return err
	}
	return c.killNamed(ctx, m.Program().Name)
}}

// killPrimaryPostgres kills -9 the primary's postgres (its postmaster
// and backends), not its Patroni: Patroni, which still holds the leader
// key, starts it again as the primary.
var killPrimaryPostgres = &action{"kill -9 the PostgreSQL primary's postgres", func(ctx context.Context, c *private) error {
	p, err := c.ha.Postgres.Primary(ctx)
	if err != nil {
		return err
	}
	pid, err := p.KillPostgres()
	if err == nil {
		c.killedNode, c.killedPid, c.killedPostgres = p.Name, pid, true
	}
	return err
}}

// losePrimary is the loss of the PostgreSQL primary's machine: its Patroni
// and postgres killed -9 together and Patroni kept down; the standby is
// promoted once the leader key expires. The heal (startNode) brings the
// node back.
var losePrimary = &action{"kill -9 the PostgreSQL primary's Patroni and postgres, keep them down", func(ctx context.Context, c *private) error {
	p, err := c.ha.Postgres.Primary(ctx)
	if err != nil {
		return err
	}
	pid, _ := c.p.Pid(ctx, p.Name)
	if err := p.Lose(ctx, c.p.Stack().Supervisor()); err != nil {
		return err
	}
	c.killedNode, c.killedPid, c.ha.lost = p.Name, pid, p.Name
	return nil
}}

// startLost starts the Patroni of the node losePrimary took down; Patroni
// rewinds its postgres (pg_rewind) into the new primary's standby.
var startLost = &action{"start the lost node's Patroni again", func(ctx context.Context, c *private) error {
	if c.ha.lost == "" {
		return errors.New("no node was lost")
	}
	name := c.ha.lost
	c.ha.lost = ""
	return c.p.Start(ctx, name)
}}

// killNamed kills a process and records its name, for the report and for
// the check that it came back by itself.
func (c *private) killNamed(ctx context.Context, name string) error {
	pid, err := c.p.Kill(ctx, name)
	if err == nil {
		c.killedNode, c.killedPid = name, pid
	}
	return err
}
