// Package engines places the private engines of internal/engine on the
// native stack's ports: the single-node stack's PostgreSQL, Redis and
// RabbitMQ (KV_ENGINES=private, the chaos campaign) and the HA topology's
// clusters (make up-ha, make chaos-ha).
package engines

import (
	"fmt"
	"path/filepath"
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
func ForStack(s *native.Settings, dir string) Single {
	port := func(name string) int { n, _ := strconv.Atoi(s.Get(name)); return n }
	mq := port("RABBITMQ_PORT")
	archive := &engine.PgBackRest{Dir: filepath.Join(dir, "pgbackrest"), ArchiveTimeout: s.Duration("KV_ARCHIVE_TIMEOUT")}
	return Single{
		Postgres: &engine.Postgres{Port: port("PGPORT"), Dir: filepath.Join(dir, "postgres"), Log: s.LogFile("postgres"), Archive: archive},
		Redis:    &engine.Redis{Port: port("REDIS_PORT"), Dir: filepath.Join(dir, "redis"), Log: s.LogFile("redis")},
		RabbitMQ: &engine.RabbitMQ{Node: fmt.Sprintf("kvstack%d@localhost", mq), Port: mq, DistPort: port("RABBITMQ_DIST_PORT"),
			MetricsPort: port("RABBITMQ_METRICS_PORT"), Dir: filepath.Join(dir, "rabbitmq"), Log: s.LogFile("rabbitmq")},
	}
}
