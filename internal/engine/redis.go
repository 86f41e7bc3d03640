package engine

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// Redis is a private redis-server on 127.0.0.1:Port, its dump in Dir. No
// snapshot is taken while it runs; a stop (SIGTERM) saves one, which the
// next start loads — entries that may since have become older than
// PostgreSQL, the case the cache repair must handle. A node of a
// RedisCluster keeps nothing but its nodes.conf.
type Redis struct {
	Name string // the program's name (default "redis")
	Port int
	Dir  string
	Log  string // its output (default Dir/NAME.log)
	// TLS, when set, is served on TLSPort (no client certificate asked
	// for), beside the plain-text Port; with TLSOnly, on Port, and nothing
	// is served in plain text.
	TLS     *TLS
	TLSPort int
	TLSOnly bool

	// Users are ACL users besides the default one: kvstack's
	// least-privilege users (docs/SECURITY.md).
	Users []RedisUser
	// Password, when set, is the default user's (requirepass); without
	// it, the default user is open to loopback, as the tests' instances
	// and the cluster's own tools use it.
	Password string
	// Replication, when named, is the ACL user a replica authenticates to
	// its master as (masteruser, masterauth), which may run replication's
	// commands alone (ReplicationRules): every node has it.
	Replication RedisUser

	cluster *RedisCluster // set for a node of a cluster (RedisCluster.Nodes)
	busPort int           // its cluster bus port, when not Port + 10000
}

// RedisUser is an ACL user: its password and its rules (ACL SETUSER's:
// key patterns, commands), given to the server as a user directive.
type RedisUser struct {
	Name, Password string
	Rules          []string
}

func (r *Redis) name() string {
	if r.Name == "" {
		return "redis"
	}
	return r.Name
}

// Init creates Dir, and writes its ACL file.
func (r *Redis) Init(context.Context) error {
	acct, err := systemUser("redis")
	if err != nil {
		acct, err = systemUser("root") // no redis user: root (or ourselves) it is
		if err != nil {
			return err
		}
	}
	if err := r.TLS.own(acct); err != nil {
		return err
	}
	if err := acct.mkdirs(r.Dir); err != nil {
		return err
	}
	if err := acct.writeSecret(r.confFile(), r.confText()); err != nil {
		return err
	}
	return acct.writeSecret(r.aclFile(), r.aclText())
}

// aclFile holds the server's users, read at each start (the users and
// their passwords are on no command line, where ps shows them).
func (r *Redis) aclFile() string { return filepath.Join(r.Dir, "users.acl") }

// confFile is the server's configuration file, read at each start before
// its command line's settings: what must not be on a command line (the
// replication user's password).
func (r *Redis) confFile() string { return filepath.Join(r.Dir, "redis.conf") }

func (r *Redis) confText() string {
	if r.Replication.Name == "" {
		return "# kvstack (internal/engine): no replication user\n"
	}
	return fmt.Sprintf("masteruser %s\nmasterauth %s\n", r.Replication.Name, r.Replication.Password)
}

// ReplicationRules are the replication user's ACL rules: no key, the
// commands a replica sends its master alone.
var ReplicationRules = []string{"resetkeys", "resetchannels", "-@all", "+psync", "+replconf", "+ping"}

// aclText is the ACL file: the default user, then Users.
func (r *Redis) aclText() string {
	def := "user default on nopass ~* &* +@all\n"
	if r.Password != "" {
		def = "user default on >" + r.Password + " ~* &* +@all\n"
	}
	var b strings.Builder
	b.WriteString(def)
	users := r.Users
	if r.Replication.Name != "" {
		users = append(slices.Clip(users), RedisUser{Name: r.Replication.Name, Password: r.Replication.Password, Rules: ReplicationRules})
	}
	for _, u := range users {
		fmt.Fprintf(&b, "user %s reset on >%s %s\n", u.Name, u.Password, strings.Join(u.Rules, " "))
	}
	return b.String()
}

// Program runs redis-server in the foreground (a cluster node's: see
// RedisCluster).
func (r *Redis) Program() supervisor.Program {
	acct, err := systemUser("redis")
	if err != nil {
		acct = account{}
	}
	port, tlsPort := r.Port, r.TLSPort
	if r.TLSOnly {
		port, tlsPort = 0, r.Port
	}
	command := []string{"redis-server", r.confFile(), "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dir", r.Dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
		"--shutdown-on-sigterm", "save", "--daemonize", "no", "--logfile", ""}
	if r.cluster != nil {
		command = r.clusterCommand(port)
	}
	if r.TLS != nil {
		command = append(command, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", r.TLS.Cert,
			"--tls-key-file", r.TLS.Key, "--tls-ca-cert-file", r.TLS.CA, "--tls-auth-clients", "no")
	}
	command = append(command, "--aclfile", r.aclFile())
	return supervisor.Program{
		Name: r.name(), Command: command, Dir: r.Dir, User: acct.name, Priority: 1,
		Health: redisProbe{r}, Addr: r.Addr(), Log: logFile(r.Log, r.Dir, r.name()),
	}
}

// redisProbe is PING as the default user, over TLS with TLSOnly (the CA
// read at each check: the stack makes it after it lists its programs).
type redisProbe struct{ r *Redis }

func (p redisProbe) Check(ctx context.Context) error {
	probe := supervisor.RedisProbe{Addr: p.r.Addr(), Password: p.r.Password}
	var err error
	probe.TLS, err = p.r.clientTLS()
	if err != nil {
		return err
	}
	return probe.Check(ctx)
}

// clientTLS is what a client of Port speaks: TLS trusting TLS.CA with
// TLSOnly, else nil (plain text).
func (r *Redis) clientTLS() (*tls.Config, error) {
	if !r.TLSOnly {
		return nil, nil
	}
	return r.TLS.ClientConfig()
}

// Client is a client of the node on Port as its default user (the
// stack's checks and tools), over TLS with TLSOnly; it never retries.
func (r *Redis) Client() (*goredis.Client, error) {
	cfg, err := r.clientTLS()
	if err != nil {
		return nil, err
	}
	return goredis.NewClient(&goredis.Options{Addr: r.Addr(), Password: r.Password, TLSConfig: cfg, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, DisableIdentity: true}), nil
}

func (p redisProbe) String() string { return "redis PING " + p.r.Addr() }

// Addr is host:port.
func (r *Redis) Addr() string { return addr(r.Port) }
