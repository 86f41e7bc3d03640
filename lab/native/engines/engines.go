// Package engines places the private engines of internal/engine on the
// native stack's ports: the single-node stack's PostgreSQL, Redis and
// RabbitMQ (KV_ENGINES=private, the chaos campaign) and the HA topology's
// clusters (make up-ha, make chaos-ha).
package engines

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/lab/native"
)

// Single is the PostgreSQL, Redis and RabbitMQ of a single-node stack.
type Single struct {
	Postgres *engine.Postgres
	Redis    *engine.Redis
	RabbitMQ *engine.RabbitMQ
}

// All lists them, for Start.
func (e Single) All() []engine.Engine { return []engine.Engine{e.Postgres, e.Redis, e.RabbitMQ} }

// Names are their programs' names.
func (e Single) Names() []string {
	var names []string
	for _, x := range e.All() {
		names = append(names, x.Program().Name)
	}
	return names
}

// ForStack is the PostgreSQL, Redis and RabbitMQ of a native stack that
// runs its own engines (KV_ENGINES=private, the chaos campaign): on the
// ports of its settings (PGPORT, REDIS_PORT, RABBITMQ_PORT,
// RABBITMQ_DIST_PORT, RABBITMQ_METRICS_PORT), their data under dir, their
// output in the stack's logs/. PostgreSQL archives its WAL into a
// pgBackRest repository under dir/pgbackrest (point-in-time recovery:
// Backups, Restore), which outlives its data directory.
//
// They are locked (Locked): each serves TLS alone, with its certificate
// from the stack's CA (native.EngineCerts), and asks for a password: the
// stack's own (native.SecretsFile). The chaos campaign's too, on settings
// of its own.
func ForStack(s *native.Settings, dir string) Single {
	port := func(name string) int { n, _ := strconv.Atoi(s.Get(name)); return n }
	mq := port("RABBITMQ_PORT")
	archive := Archive(s, dir, "kvstack")
	e := Single{
		Postgres: &engine.Postgres{Port: port("PGPORT"), Dir: filepath.Join(dir, "postgres"), Log: s.LogFile("postgres"), Archive: archive},
		Redis:    &engine.Redis{Port: port("REDIS_PORT"), Dir: filepath.Join(dir, "redis"), Log: s.LogFile("redis"), Users: RedisUsers(s)},
		RabbitMQ: &engine.RabbitMQ{Node: fmt.Sprintf("kvstack%d@localhost", mq), Port: mq, DistPort: port("RABBITMQ_DIST_PORT"),
			MetricsPort: port("RABBITMQ_METRICS_PORT"), Dir: filepath.Join(dir, "rabbitmq"), Log: s.LogFile("rabbitmq")},
	}
	if Locked(s) {
		e.Postgres.TLS, e.Postgres.TLSOnly, e.Postgres.Password = engineTLS(s, "postgres"), true, s.Secret("PG_SUPERUSER")
		e.Redis.TLS, e.Redis.TLSOnly, e.Redis.Password = engineTLS(s, "redis"), true, s.Secret("REDIS_DEFAULT")
		e.RabbitMQ.TLS, e.RabbitMQ.TLSOnly = engineTLS(s, "rabbitmq"), true
	}
	return e
}

// engineTLS is what the stack's own engine name serves: its certificate
// from the stack's CA (Certs makes it).
func engineTLS(s *native.Settings, name string) *engine.TLS {
	cert, key := native.EngineCert(s, name)
	return &engine.TLS{CA: s.Get("KV_TLS_CA"), Cert: cert, Key: key}
}

// Locked tells whether the stack's engines serve TLS alone and ask for
// passwords: those it runs itself (KV_ENGINES=private, the HA topology's
// clusters, the chaos campaigns'), never the machine's shared ones.
func Locked(s *native.Settings) bool { return s.PrivateEngines() }

// Certs makes the certificates of the engines ForStack and ForHA lock
// (Locked), one per engine (every node of a cluster serves its engine's;
// the HA topology's etcd has one too), before their Init gives each its
// key.
func Certs(s *native.Settings) error {
	if !Locked(s) {
		return nil
	}
	names := []string{"postgres", "redis", "rabbitmq"}
	if s.HA() {
		names = append(names, "etcd")
	}
	_, err := native.EngineCerts(s, names...)
	return err
}

// Archive is the pgBackRest repository of a stack whose engines are under
// dir, stanza being its PostgreSQL's: the single node's (kvstack) or the
// HA topology's cluster's (kvstack-ha). Both topologies keep their
// backups and WAL in the one repository, dir/pgbackrest, each under its
// stanza (a stanza belongs to one database system).
func Archive(s *native.Settings, dir, stanza string) *engine.PgBackRest {
	return &engine.PgBackRest{Stanza: stanza, Dir: filepath.Join(dir, "pgbackrest"), ArchiveTimeout: s.Duration("KV_ARCHIVE_TIMEOUT")}
}

// Provision makes, on a stack's own PostgreSQL (its primary), the roles
// and the database its settings name (native.PostgresRoles): the owner,
// who owns the database kvstack and runs the migrations, the app's role
// and the exporter's, a member of pg_monitor. Migrate then grants them
// (migrations.Grant).
func Provision(ctx context.Context, s *native.Settings, pg *engine.Postgres) error {
	r := s.PostgresRoles()
	// Each role first, its password set anew (the stack's may be new).
	roles := []engine.Role{{Name: r.Owner.User, Password: r.Owner.Password}}
	if r.App.User != r.Owner.User {
		roles = append(roles, engine.Role{Name: r.App.User, Password: r.App.Password})
	}
	if r.Monitor.User != r.Owner.User && r.Monitor.User != r.App.User {
		roles = append(roles, engine.Role{Name: r.Monitor.User, Password: r.Monitor.Password, In: []string{"pg_monitor"}})
	}
	if err := pg.CreateRoles(ctx, roles...); err != nil {
		return err
	}
	return pg.CreateDatabase(ctx, "kvstack", r.Owner.User, r.Owner.Password)
}

// ProvisionRabbitMQ makes, on a stack's own RabbitMQ (one node of a
// cluster: users are the cluster's), the API's user, who may only publish
// to the default exchange, and the consumer's, who may only consume the
// work queues (docs/SECURITY.md). migrate declares the queues as guest.
//
// When migrate's user (RABBITMQ_URL) is not guest, it is made too, with
// every right on the vhost, and guest, whose password everybody knows, is
// deleted.
func ProvisionRabbitMQ(ctx context.Context, s *native.Settings, node *engine.RabbitMQ) error {
	admin, api, consumer := s.RabbitMQCredentials()
	add, del := s.WorkQueues()
	users := []engine.User{
		{Name: api.User, Password: api.Password, Configure: "^$", Write: `^amq\.default$`, Read: "^$"},
		{Name: consumer.User, Password: consumer.Password, Configure: "^$", Write: "^$",
			Read: "^(" + regexp.QuoteMeta(add) + "|" + regexp.QuoteMeta(del) + ")$"},
	}
	var remove []string
	if admin.User != "guest" {
		users = append(users, engine.User{Name: admin.User, Password: admin.Password, Configure: ".*", Write: ".*", Read: ".*"})
		remove = append(remove, "guest")
	}
	return node.AddUsers(ctx, remove, users...)
}

// RedisUsers are the ACL users of a stack's own Redis (docs/SECURITY.md):
// the app's (REDIS_USERNAME), limited to the cache's keys (the key prefix:
// client entries and the cache's own marks) and the commands and script
// the cache runs; the exporter's (KV_REDIS_EXPORTER_USERNAME), limited to
// the server's statistics and no key. None when the settings name none.
func RedisUsers(s *native.Settings) []engine.RedisUser {
	var users []engine.RedisUser
	if u := s.Get("REDIS_USERNAME"); u != "" {
		users = append(users, engine.RedisUser{Name: u, Password: s.Get("REDIS_PASSWORD"), Rules: []string{
			"~" + globEscape(s.RedisKeyPrefix()) + "*", "resetchannels", "-@all",
			"+ping", "+hello", "+auth", "+echo", "+select", "+readonly", "+asking", "+client|setname",
			// The cluster client reads the commands' flags (COMMAND).
			"+command",
			// The cache: reads, the compare-and-set script and what it calls.
			"+hmget", "+evalsha", "+eval", "+script|load", "+hget", "+hset", "+del", "+pexpire",
			// Purge, the restart and failover marks, the cluster's map.
			"+scan", "+unlink", "+get", "+set", "+info", "+cluster|myid", "+cluster|shards", "+cluster|slots", "+cluster|nodes"}})
	}
	if u := s.Get("KV_REDIS_EXPORTER_USERNAME"); u != "" {
		users = append(users, engine.RedisUser{Name: u, Password: s.Get("KV_REDIS_EXPORTER_PASSWORD"), Rules: []string{
			"resetkeys", "resetchannels", "-@all", "+ping", "+hello", "+auth", "+select", "+client|setname", "+client|list",
			"+info", "+config|get", "+cluster|info", "+slowlog", "+latency", "+dbsize", "+memory|stats"}})
	}
	return users
}

// globEscape escapes Redis glob's special characters in a key prefix.
func globEscape(s string) string {
	var b []byte
	for i := range len(s) {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
