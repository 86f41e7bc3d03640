package engines

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/native"
)

// HA is the HA topology's engines (KV_TOPOLOGY=ha, make up-ha): a RabbitMQ
// cluster, a Redis Cluster and a PostgreSQL pair, on the ports stack.env
// gives each node (native.Settings.HANodes), their data under one
// directory, their output in the stack's logs/.
type HA struct {
	RabbitMQ *engine.RabbitMQCluster
	Redis    *engine.RedisCluster
	Postgres *engine.PostgresPair

	settings *native.Settings
}

// ForHA describes the HA topology's engines of s, their data under dir.
// Each node's program is named as in HANodes (rabbitmq1, redis4,
// postgres2); the RabbitMQ nodes' Erlang names carry the first node's
// port, so that two stacks on other ports never share a node name.
func ForHA(s *native.Settings, dir string) HA {
	nodes := s.HANodes()
	var mqPorts, redisPorts []int
	for _, n := range nodes.RabbitMQ {
		mqPorts = append(mqPorts, n.Port, n.DistPort, n.MetricsPort)
	}
	mq := engine.NewRabbitMQCluster("rabbitmq", fmt.Sprintf("kvstack%d-", nodes.RabbitMQ[0].Port), dir, mqPorts)
	for _, n := range mq.Nodes {
		n.Log = s.LogFile(n.Program().Name)
	}
	for _, n := range nodes.Redis {
		redisPorts = append(redisPorts, n.Port)
	}
	redis := &engine.RedisCluster{Name: "redis", Ports: redisPorts, Dir: dir, LogDir: filepath.Dir(s.LogFile("redis")), Users: RedisUsers(s)}
	pg := make([]*engine.Postgres, len(nodes.Postgres))
	for i, n := range nodes.Postgres {
		pg[i] = &engine.Postgres{Name: n.Name, Port: n.Port, Dir: filepath.Join(dir, n.Name), Log: s.LogFile(n.Name)}
	}
	return HA{RabbitMQ: mq, Redis: redis, Postgres: engine.NewPostgresPair(pg[0], pg[1]), settings: s}
}

// Programs are every node's program. The RabbitMQ and Redis nodes start
// together (priority 1) and supervisord restarts any that dies. The
// PostgreSQL nodes are the keeper's: it makes, starts, promotes and
// rejoins them (Keeper), so Up does not start them and supervisord does
// not restart them: a primary that supervisord brought back by itself
// beside a promoted standby would be a second primary.
func (h HA) Programs() []supervisor.Program {
	var out []supervisor.Program
	for _, e := range append(h.RabbitMQ.Engines(), h.Redis.Engines()...) {
		out = append(out, e.Program())
	}
	for _, n := range h.Postgres.Nodes {
		p := n.Program()
		p.Manual, p.NoRestart = true, true
		out = append(out, p)
	}
	return out
}

// Init prepares the RabbitMQ and Redis nodes' directories (the keeper
// makes the PostgreSQL nodes').
func (h HA) Init(ctx context.Context) error {
	for _, e := range append(h.RabbitMQ.Engines(), h.Redis.Engines()...) {
		if err := e.Init(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Form waits, all at once, until the RabbitMQ cluster has every member
// running, the Redis Cluster is created and whole, and a PostgreSQL
// primary answers; then it makes the kvstack roles and database on it
// (Provision).
func (h HA) Form(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, formTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, form := range []func(context.Context) error{h.RabbitMQ.Form, h.Redis.Form, h.waitPrimary} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = form(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	primary, err := h.Postgres.Primary(ctx)
	if err != nil {
		return err
	}
	return errors.Join(Provision(ctx, h.settings, primary), ProvisionRabbitMQ(ctx, h.settings, h.RabbitMQ.Nodes[0]))
}

// formTimeout bounds Form: three RabbitMQ nodes take ~26 s to form at
// first boot on an idle machine, and much longer on a loaded one.
const formTimeout = 5 * time.Minute

func (h HA) waitPrimary(ctx context.Context) error {
	return supervisor.Wait(ctx, primaryProbe{h.Postgres}, formTimeout)
}

// primaryProbe answers when one node of the pair answers as its primary.
type primaryProbe struct{ pp *engine.PostgresPair }

func (p primaryProbe) Check(ctx context.Context) error {
	_, err := p.pp.Primary(ctx)
	return err
}

func (p primaryProbe) String() string {
	return "postgres primary of " + p.pp.Nodes[0].Program().Name + ", " + p.pp.Nodes[1].Program().Name
}
