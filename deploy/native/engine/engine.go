// Package engine runs PRIVATE PostgreSQL, Redis and RabbitMQ instances:
// data directories of their own, ports of their own, started, stopped and
// killed under a supervisord of their own (deploy/native). Tests that break
// a dependency, and the chaos campaign, use them; nothing here ever
// addresses the machine's shared services.
//
// An instance is data: a struct naming its ports and directory. A cluster
// is more of them, each one more program under the same supervisor:
// RabbitMQCluster is RabbitMQ nodes listing each other as Peers (issue 12
// adds a PostgreSQL standby of a primary and Redis nodes in cluster mode
// alike).
package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/kvstack/kvstack/deploy/native"
)

// Engine is one private instance of a data engine.
type Engine interface {
	// Init prepares its directory (data, configuration) once; it is a
	// no-op when already done, so a stopped instance restarts with its data.
	Init(ctx context.Context) error
	// Program is how the supervisor runs it, in the foreground.
	Program() native.Program
}

// FreePorts returns n TCP ports of 127.0.0.1 that nothing listens on now
// (the kernel's choice, so unlikely to be taken again at once).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// account is the user an engine runs as: its Debian system user when we
// are root (PostgreSQL refuses to run as root), else whoever we are.
type account struct {
	name     string
	uid, gid int
	home     string
}

func systemUser(name string) (account, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return account{}, err
		}
		return account{uid: os.Geteuid(), gid: os.Getegid(), home: u.HomeDir}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, fmt.Errorf("user %s (from its Debian package): %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{name: name, uid: uid, gid: gid, home: u.HomeDir}, nil
}

// mkdirs creates dirs owned by a, readable by the rest (the supervisor
// writes the logs; tests read them).
func (a account) mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chown(d, a.uid, a.gid); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes a file owned by a.
func (a account) writeFile(path, text string) error {
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Chown(path, a.uid, a.gid)
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Engines are the PostgreSQL, Redis and RabbitMQ of one stack.
type Engines struct {
	Postgres *Postgres
	Redis    *Redis
	RabbitMQ *RabbitMQ
}

// All lists them, for Start.
func (e Engines) All() []Engine { return []Engine{e.Postgres, e.Redis, e.RabbitMQ} }

// Names are their programs' names.
func (e Engines) Names() []string {
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
// output in the stack's logs/.
func ForStack(s *native.Settings, dir string) Engines {
	port := func(name string) int { n, _ := strconv.Atoi(s.Get(name)); return n }
	mq := port("RABBITMQ_PORT")
	return Engines{
		Postgres: &Postgres{Port: port("PGPORT"), Dir: filepath.Join(dir, "postgres"), Log: s.LogFile("postgres")},
		Redis:    &Redis{Port: port("REDIS_PORT"), Dir: filepath.Join(dir, "redis"), Log: s.LogFile("redis")},
		RabbitMQ: &RabbitMQ{Node: fmt.Sprintf("kvstack%d@localhost", mq), Port: mq, DistPort: port("RABBITMQ_DIST_PORT"),
			MetricsPort: port("RABBITMQ_METRICS_PORT"), Dir: filepath.Join(dir, "rabbitmq"), Log: s.LogFile("rabbitmq")},
	}
}

// logFile is where the supervisor writes an engine's output: log when
// set, else NAME.log in its directory.
func logFile(log, dir, name string) string {
	if log != "" {
		return log
	}
	return filepath.Join(dir, name+".log")
}
