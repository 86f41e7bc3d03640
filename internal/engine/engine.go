// Package engine runs PRIVATE PostgreSQL, Redis and RabbitMQ instances:
// data directories of their own, ports of their own, started, stopped and
// killed under a supervisord of their own (internal/supervisor). The tests
// that break a dependency (through enginetest), the lab's HA topology and
// its chaos campaign use them; nothing here ever addresses the machine's
// shared services.
//
// An instance is data: a struct naming its ports and directory. A cluster
// is more of them, each one more program under the same supervisor:
// RabbitMQCluster is RabbitMQ nodes listing each other as Peers, Patroni
// PostgreSQL nodes each run by its Patroni on an Etcd (a primary and its
// synchronous standby), RedisCluster nodes in cluster mode. A Postgres
// whose Archive is a PgBackRest archives its WAL and takes base backups
// into a local pgBackRest repository, from which it is restored to a point
// in time.
package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// Engine is one private instance of a data engine.
type Engine interface {
	// Init prepares its directory (data, configuration) once; it is a
	// no-op when already done, so a stopped instance restarts with its data.
	Init(ctx context.Context) error
	// Program is how the supervisor runs it, in the foreground.
	Program() supervisor.Program
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

// writeSecret writes a file owned by a that only a may read.
func (a account) writeSecret(path, text string) error {
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil { // WriteFile keeps an existing file's mode
		return err
	}
	return os.Chown(path, a.uid, a.gid)
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// logFile is where the supervisor writes an engine's output: log when
// set, else NAME.log in its directory.
func logFile(log, dir, name string) string {
	if log != "" {
		return log
	}
	return filepath.Join(dir, name+".log")
}
