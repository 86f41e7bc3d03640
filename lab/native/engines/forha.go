package engines

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/native"
)

// HA is the HA topology's engines (KV_TOPOLOGY=ha, make up-ha): a RabbitMQ
// cluster, a Redis Cluster and two PostgreSQL nodes kept by Patroni on an
// etcd of their own, on the ports stack.env gives each node
// (native.Settings.HANodes), their data under one directory, their output
// in the stack's logs/. Both PostgreSQL nodes archive their WAL into the
// pgBackRest repository the single-node stack's uses (dir/pgbackrest),
// under a stanza of the cluster's own, kvstack-ha (point-in-time
// recovery: Backups, Restore).
type HA struct {
	RabbitMQ *engine.RabbitMQCluster
	Redis    *engine.RedisCluster
	Postgres *engine.Patroni

	settings *native.Settings
}

// ForHA describes the HA topology's engines of s, their data under dir,
// locked as ForStack locks a single node's: every node serves TLS alone
// with its engine's certificate from the stack's CA, and every user has a
// password of the stack's (native.SecretsFile). PostgreSQL's nodes ask
// for scram-sha-256 over hostssl, Patroni's superuser, replication and
// pg_rewind users included, and their Patroni's REST API asks for a
// password (basic auth) of a switchover, a restart or any other change,
// and their etcd serves TLS alone and asks every client for a certificate
// of the stack's CA (Patroni presents PostgreSQL's);
// the Redis nodes' default user has a password,
// their replicas authenticate as RedisReplicationUser, their bus and
// replication are TLS; the RabbitMQ nodes serve AMQPS alone, guest
// deleted (ProvisionRabbitMQ).
// Each node's program is named as in HANodes (rabbitmq1, redis4,
// postgres2: a PostgreSQL node's program is its Patroni, which runs its
// postgres); the RabbitMQ nodes' Erlang names carry the first node's port,
// so that two stacks on other ports never share a node name.
func ForHA(s *native.Settings, dir string) HA {
	nodes := s.HANodes()
	var mqPorts, redisPorts []int
	for _, n := range nodes.RabbitMQ {
		mqPorts = append(mqPorts, n.Port, n.DistPort, n.MetricsPort)
	}
	mq := engine.NewRabbitMQCluster("rabbitmq", fmt.Sprintf("kvstack%d-", nodes.RabbitMQ[0].Port), dir, mqPorts)
	for _, n := range mq.Nodes {
		n.Log = s.LogFile(n.Program().Name)
		n.TLS, n.TLSOnly = engineTLS(s, "rabbitmq"), true
	}
	for _, n := range nodes.Redis {
		redisPorts = append(redisPorts, n.Port)
	}
	redis := &engine.RedisCluster{Name: "redis", Ports: redisPorts, Dir: dir, LogDir: filepath.Dir(s.LogFile("redis")), Users: RedisUsers(s),
		TLS: engineTLS(s, "redis"), TLSOnly: true, Password: s.Secret("REDIS_DEFAULT"),
		Replication: engine.RedisUser{Name: RedisReplicationUser, Password: s.Secret("REDIS_REPLICATION")}}
	etcd := &engine.Etcd{Name: nodes.Etcd.Name, Port: nodes.Etcd.Port, PeerPort: nodes.Etcd.PeerPort,
		Dir: filepath.Join(dir, nodes.Etcd.Name), Log: s.LogFile(nodes.Etcd.Name), TLS: engineTLS(s, "etcd")}
	pg := make([]*engine.PatroniNode, len(nodes.Postgres))
	for i, n := range nodes.Postgres {
		pg[i] = &engine.PatroniNode{Name: n.Name, Port: n.Port, RestPort: n.RestPort, Dir: filepath.Join(dir, n.Name), Log: s.LogFile(n.Name)}
	}
	pc := engine.NewPatroni("kvstack", etcd, pg...)
	pc.Bootstrap = BootstrapSQL(s)
	pc.Archive = Archive(s, dir, "kvstack-ha")
	pc.TLS, pc.Password = engineTLS(s, "postgres"), s.Secret("PG_SUPERUSER")
	pc.ReplicationPassword, pc.RewindPassword = s.Secret("PG_REPLICATION"), s.Secret("PG_REWIND")
	pc.RestPassword = s.Secret("PATRONI_REST")
	return HA{RabbitMQ: mq, Redis: redis, Postgres: pc, settings: s}
}

// RedisReplicationUser is the ACL user the HA topology's Redis replicas
// authenticate to their masters as (engine.ReplicationRules).
const RedisReplicationUser = "kvstack_replication"

// BootstrapSQL is what the HA topology's first PostgreSQL primary runs
// once, as superuser, just after initdb (Patroni's post_bootstrap): the
// roles of the settings' URLs (native.PostgresRoles: the owner of
// DATABASE_URL, the app's, the exporter's, a member of pg_monitor;
// engine.RoleSQL) and the database the owner owns. Every role and grant
// the topology's PostgreSQL needs from its first start goes here; the
// standby copies them. migrate grants the roles their rights.
func BootstrapSQL(s *native.Settings) []string {
	r := s.PostgresRoles()
	stmts := engine.RoleSQL(engine.Role{Name: r.Owner.User, Password: r.Owner.Password})
	stmts = append(stmts, "CREATE DATABASE "+pgx.Identifier{"kvstack"}.Sanitize()+" OWNER "+pgx.Identifier{r.Owner.User}.Sanitize())
	if r.App.User != r.Owner.User {
		stmts = append(stmts, engine.RoleSQL(engine.Role{Name: r.App.User, Password: r.App.Password})...)
	}
	if r.Monitor.User != r.Owner.User && r.Monitor.User != r.App.User {
		stmts = append(stmts, engine.RoleSQL(engine.Role{Name: r.Monitor.User, Password: r.Monitor.Password, In: []string{"pg_monitor"}})...)
	}
	return stmts
}

// Programs are every node's program: the RabbitMQ and Redis nodes and etcd
// start together (priority 1), then the PostgreSQL nodes' Patroni one
// after the other (the first bootstraps the cluster, the next copies it).
// supervisord restarts any that dies; Patroni restarts, promotes and
// rewinds PostgreSQL.
func (h HA) Programs() []supervisor.Program {
	var out []supervisor.Program
	for _, e := range append(h.RabbitMQ.Engines(), h.Redis.Engines()...) {
		out = append(out, e.Program())
	}
	for _, n := range h.Postgres.Nodes {
		out = append(out, n.Program())
	}
	return append(out, h.Postgres.Etcd.Program())
}

// Init makes the engines' certificates (Certs) and prepares every node's
// directory and configuration (Patroni makes the PostgreSQL data
// directories).
func (h HA) Init(ctx context.Context) error {
	if err := Certs(h.settings); err != nil {
		return err
	}
	for _, e := range append(append(h.RabbitMQ.Engines(), h.Redis.Engines()...), h.Postgres.Engines()...) {
		if err := e.Init(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Form waits, all at once, until the RabbitMQ cluster has every member
// running, the Redis Cluster is created and whole, and a PostgreSQL
// primary takes kvstack's sessions (its bootstrap has run); then it makes
// the RabbitMQ users (ProvisionRabbitMQ).
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
	return ProvisionRabbitMQ(ctx, h.settings, h.RabbitMQ.Nodes[0])
}

// formTimeout bounds Form: three RabbitMQ nodes take ~26 s to form at
// first boot on an idle machine, and much longer on a loaded one.
const formTimeout = 5 * time.Minute

func (h HA) waitPrimary(ctx context.Context) error {
	owner := h.settings.PostgresRoles().Owner
	return h.Postgres.WaitPrimary(ctx, owner.User, owner.Password, "kvstack", formTimeout)
}
