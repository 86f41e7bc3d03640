package engine

import (
	"context"
	"strconv"

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
	// for), beside the plain-text Port.
	TLS     *TLS
	TLSPort int

	// Users are ACL users besides the default one (which stays open to
	// loopback, as the harness's checks and the cluster's own tools use
	// it): kvstack's least-privilege users (docs/SECURITY.md).
	Users []RedisUser

	cluster *RedisCluster // set for a node of a cluster (RedisCluster.Nodes)
	busPort int           // its cluster bus port, when not Port + 10000
}

// RedisUser is an ACL user: its password and its rules (ACL SETUSER's:
// key patterns, commands), given to the server as a user directive.
type RedisUser struct {
	Name, Password string
	Rules          []string
}

// userArgs are the command line's user directives: a user, on, its
// password, its rules.
func userArgs(users []RedisUser) []string {
	var args []string
	for _, u := range users {
		args = append(append(args, "--user", u.Name, "reset", "on", ">"+u.Password), u.Rules...)
	}
	return args
}

func (r *Redis) name() string {
	if r.Name == "" {
		return "redis"
	}
	return r.Name
}

// Init creates Dir.
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
	return acct.mkdirs(r.Dir)
}

// Program runs redis-server in the foreground (a cluster node's: see
// RedisCluster).
func (r *Redis) Program() supervisor.Program {
	acct, err := systemUser("redis")
	if err != nil {
		acct = account{}
	}
	command := []string{"redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port),
		"--dir", r.Dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
		"--shutdown-on-sigterm", "save", "--daemonize", "no", "--logfile", ""}
	if r.cluster != nil {
		command = r.clusterCommand()
	}
	if r.TLS != nil {
		command = append(command, "--tls-port", strconv.Itoa(r.TLSPort), "--tls-cert-file", r.TLS.Cert,
			"--tls-key-file", r.TLS.Key, "--tls-ca-cert-file", r.TLS.CA, "--tls-auth-clients", "no")
	}
	command = append(command, userArgs(r.Users)...)
	return supervisor.Program{
		Name: r.name(), Command: command, Dir: r.Dir, User: acct.name, Priority: 1,
		Health: supervisor.RedisProbe{Addr: r.Addr()}, Addr: r.Addr(), Log: logFile(r.Log, r.Dir, r.name()),
	}
}

// Addr is host:port.
func (r *Redis) Addr() string { return addr(r.Port) }
