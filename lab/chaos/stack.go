package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// Ports of the campaign's private stack: the chaos ports, which nothing
// else on the machine uses (the shared services and `make up`'s stack are
// never touched). They lie below Linux's ephemeral range (32768-60999), so
// that no outgoing connection's local port can take one while the
// campaign starts.
var chaosPorts = map[string]string{
	"PGPORT": "30432", "REDIS_PORT": "30379", "RABBITMQ_PORT": "30672", "RABBITMQ_DIST_PORT": "30673", "RABBITMQ_METRICS_PORT": "30692",
	"KV_NGINX_PORT": "30080", "KV_NGINX_STATUS_PORT": "30079", "KV_API1_PORT": "30081", "KV_API2_PORT": "30082", "KV_CONSUMER_PORT": "30090",
	"KV_API1_ADMIN_PORT": "30181", "KV_API2_ADMIN_PORT": "30182", "KV_CONSUMER_ADMIN_PORT": "30190",
	// Not run by the campaign; shifted all the same.
	"KV_PROMETHEUS_PORT": "30990", "KV_ALERTMANAGER_PORT": "30993", "KV_JAEGER_UI_PORT": "30686",
	"KV_JAEGER_OTLP_GRPC_PORT": "30317", "KV_JAEGER_OTLP_HTTP_PORT": "30318",
	"KV_JAEGER_QUERY_GRPC_PORT": "30685", "KV_JAEGER_HEALTH_PORT": "30133",
	"KV_JAEGER_METRICS_PORT": "30889", "KV_MTAIL_PORT": "30903", "KV_NGINX_EXPORTER_PORT": "30113",
	"KV_POSTGRES_EXPORTER_PORT": "30187", "KV_REDIS_EXPORTER_PORT": "30121",
}

// kvstackProcs are the stack's processes the campaign runs (no
// observability), and the extra consumers some faults add.
var (
	kvstackProcs   = []string{"api1", "api2", "consumer", "nginx"}
	extraConsumers = []int{2, 3}
)

// private is the campaign's stack: PostgreSQL, Redis and RabbitMQ
// instances of its own and kvstack's processes, all under one supervisord
// tied to the campaign (it stops them should the campaign die).
type private struct {
	s     *native.Settings
	p     *engine.Private
	pg    *engine.Postgres // the single-node stack's engines
	redis *engine.Redis
	mq    *engine.RabbitMQ
	ha    *haPrivate // the HA stack's (make chaos-ha); nil on the single-node stack
	// killedNode and killedPid are the engine node a fault killed last
	// (faults that pick their node as they inject); killedPostgres tells
	// that only a PostgreSQL node's postgres was killed (killedPid its
	// postmaster), not its Patroni.
	killedNode     string
	killedPid      int
	killedPostgres bool
}

// startPrivate starts the engines (data in engineDir), creates the kvstack
// database, builds the binaries into dir/bin, migrates, renders nginx's
// config and starts the stack's processes (state in dir/stack).
func startPrivate(ctx context.Context, root, dir, engineDir string, log io.Writer) (*private, error) {
	return startPrivateOn(ctx, root, dir, engineDir, log, chaosPorts, false)
}

// startPrivateOn is startPrivate on the given ports; with archive, its
// PostgreSQL archives with pgBackRest (the DR drill), else not (the fault
// campaign takes no backups).
func startPrivateOn(ctx context.Context, root, dir, engineDir string, log io.Writer, ports map[string]string, archive bool) (*private, error) {
	s, err := privateSettings(root, dir, ports)
	if err != nil {
		return nil, err
	}
	s.BinDir = filepath.Join(dir, "bin") // a private build never replaces the running stack's
	// The engines a stack runs for itself (KV_ENGINES=private), on the
	// chaos ports, locked; a PostgreSQL stop is an immediate shutdown, as a
	// crash.
	eng := engines.ForStack(s, engineDir)
	eng.Postgres.Immediate = true
	if !archive {
		eng.Postgres.Archive = nil
	}
	c := &private{s: s, pg: eng.Postgres, redis: eng.Redis, mq: eng.RabbitMQ}
	// Left over by a campaign that was killed: its supervisord stopped
	// the engines; their data would only mislead this one.
	if err := os.RemoveAll(engineDir); err != nil {
		return nil, err
	}
	started := time.Now()
	if c.p, err = engine.Start(ctx, engineDir, log, eng.All()...); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "==> chaos: private PostgreSQL :%d, Redis :%d, RabbitMQ %s :%d up in %s\n",
		c.pg.Port, c.redis.Port, c.mq.Node, c.mq.Port, time.Since(started).Round(100*time.Millisecond))
	err = errors.Join(
		engines.Provision(ctx, s, c.pg),
		engines.ProvisionRabbitMQ(ctx, s, c.mq),
		native.Build(ctx, s, log),
	)
	if err == nil {
		err = native.Migrate(ctx, s, log)
	}
	if err == nil {
		err = native.WriteConfigs(ctx, s, nil, log)
	}
	if err == nil {
		st := c.p.Stack()
		st.Programs = append(st.Programs, native.Select(native.Processes(s), kvstackProcs...)...)
		for _, n := range extraConsumers {
			extra := native.Consumer(s, n)
			extra.Manual = true // started and stopped by the faults that need them
			st.Programs = append(st.Programs, extra)
		}
		_, err = st.Up(ctx)
	}
	if err != nil {
		return c, errors.Join(err, c.close())
	}
	fmt.Fprintf(log, "==> chaos: private stack up in %s: nginx %s (state %s)\n",
		time.Since(started).Round(100*time.Millisecond), s.Get("NGINX_LISTEN"), s.Dir)
	return c, nil
}

// privateSettings are the single-node campaign's settings (state under
// dir, on ports), its engines' certificates made: its engines are
// locked as KV_ENGINES=private locks make up's (engines.ForStack), TLS
// alone, the stack's users and passwords.
func privateSettings(root, dir string, ports map[string]string) (*native.Settings, error) {
	s, err := native.Load(root, chaosEnviron(ports, dir, "KV_ENGINES=private", "KV_ARCHIVE_TIMEOUT="+drArchiveTimeout.String()))
	if err != nil {
		return nil, err
	}
	return s, engines.Certs(s)
}

// close stops every private process and removes the engines' data.
func (c *private) close() error {
	if c == nil || c.p == nil {
		return nil
	}
	return c.p.Close(context.Background())
}

// pids is the pid of each kvstack process of the private stack that runs
// (the engines, which faults stop and start on purpose, are left out).
func (c *private) pids(ctx context.Context) (map[string]int, error) {
	procs, err := c.p.Stack().Supervisor().Processes(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	engines := c.engineNames()
	for name, info := range procs {
		if !slices.Contains(engines, name) && info.State == "RUNNING" {
			m[name] = info.Pid
		}
	}
	return m, nil
}

// waitRunning waits, at most 30 s, until supervisord counts each of names
// RUNNING (pids lists it).
func (c *private) waitRunning(ctx context.Context, names []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids, err := c.pids(ctx)
		missing := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return pids[n] != 0 })
		if err == nil && len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%v not RUNNING within 30 s (%v)", missing, err)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// engineNames are the engines' programs.
func (c *private) engineNames() []string {
	if c.ha != nil {
		var names []string
		for _, p := range c.ha.Programs() {
			names = append(names, p.Name)
		}
		return names
	}
	return []string{c.pg.Program().Name, c.redis.Program().Name, c.mq.Program().Name}
}

// readyAddrs are the processes whose /readyz says they recovered.
func (c *private) readyAddrs() []string {
	addrs := []string{c.s.Addr("KV_API1_PORT"), c.s.Addr("KV_API2_PORT"), c.s.Addr("KV_CONSUMER_PORT")}
	if c.ha != nil {
		addrs = append(addrs, native.Consumer(c.s, 2).Addr)
	}
	return addrs
}

// queues are the work queues' and dead-letter queues' depths.
func (c *private) queues(ctx context.Context) (map[string]engine.QueueDepth, error) {
	if c.ha != nil {
		return c.ha.queues(ctx)
	}
	return c.mq.Queues(ctx)
}

// database is the stack's PostgreSQL as a restore sees it, as make restore
// picks it on either topology: the single node, or the Patroni cluster.
func (c *private) database() engines.Database {
	if c.ha != nil {
		return engines.ClusterDatabase{Patroni: c.ha.Postgres}
	}
	return engines.SingleDatabase{Postgres: c.pg}
}

// whole tells whether the engines are whole again (the HA clusters; a
// single node is checked by the load's writes and reads).
func (c *private) whole(ctx context.Context) error {
	if c.ha != nil {
		return c.ha.whole(ctx)
	}
	return nil
}
