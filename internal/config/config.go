// Package config reads each binary's configuration from the environment:
// one struct per subsystem, owned by the package that uses it, with its
// defaults visible in its env tags. Secrets never reach the logs: each
// subsystem's config renders itself with its password masked.
package config

import (
	"fmt"
	"os"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/clock"
	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/health"
	"github.com/kvstack/kvstack/internal/httpapi"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/internal/token"
)

// Common is what every binary has.
type Common struct {
	// LogLevel is the least severe level logged: debug, info, warn or error.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// InstanceID tells replicas apart in logs, traces and metrics; it
	// defaults to the host name and listen address.
	InstanceID string `env:"KV_INSTANCE_ID"`
	// ShutdownTimeout bounds a graceful stop, from SIGTERM until the
	// server has stopped, the API's drain delay included; flushing the
	// last spans takes at most 5s more.
	ShutdownTimeout time.Duration `env:"KV_SHUTDOWN_TIMEOUT" envDefault:"15s"`
}

// API configures cmd/api.
type API struct {
	Common
	// Addr serves the API, the one port nginx routes to. Port 0 picks a
	// free port.
	Addr string `env:"KV_HTTP_ADDR" envDefault:"127.0.0.1:8081"`
	// AdminAddr serves /metrics, /debug/pprof and /debug/vars, for
	// Prometheus and operators only: loopback unless a network policy
	// keeps everyone else out (docs/DESIGN.md). Defaults: the API's
	// 127.0.0.1:8181, the consumer's 127.0.0.1:8190.
	AdminAddr string `env:"KV_ADMIN_ADDR" envDefault:"127.0.0.1:8181"`
	HTTP      httpapi.Config
	// Auth identifies the clients of the data routes (KV_AUTH_*).
	Auth     auth.Config
	Limits   kv.Limits
	Wait     kv.WaitConfig
	Token    token.Config
	Postgres postgres.Config
	Redis    redis.Config
	RabbitMQ rabbitmq.Config
	// Messages signs what the API queues.
	Messages msgsig.Config
	// Clock refuses writes while this replica's clock is off.
	Clock clock.Config
	// Health paces the dependency checks behind /readyz.
	Health health.Config

	// DrainDelay is how long a stopping API goes on serving after its
	// readiness turned false (/readyz 503 "draining"), so that the edge
	// and the Service's endpoints stop sending it requests before it stops
	// taking them. Waits end, and in-flight requests finish, after it.
	DrainDelay time.Duration `env:"KV_DRAIN_DELAY" envDefault:"5s"`
}

// Validate rejects API settings that cannot work together. A stop must
// leave, after the drain delay, time for a publish in flight to be
// confirmed or answered 503: KV_SHUTDOWN_TIMEOUT above KV_DRAIN_DELAY plus
// RABBITMQ_PUBLISH_TIMEOUT.
func (c API) Validate() error {
	if err := c.Wait.Validate(); err != nil {
		return err
	}
	if err := c.Health.Validate(); err != nil {
		return err
	}
	switch {
	case c.DrainDelay < 0:
		return fmt.Errorf("KV_DRAIN_DELAY (%s) must not be negative", c.DrainDelay)
	case c.ShutdownTimeout <= c.DrainDelay+c.RabbitMQ.PublishTimeout:
		return fmt.Errorf("KV_SHUTDOWN_TIMEOUT (%s) must exceed KV_DRAIN_DELAY (%s) plus RABBITMQ_PUBLISH_TIMEOUT (%s): a publish in flight when the drain ends must get its answer",
			c.ShutdownTimeout, c.DrainDelay, c.RabbitMQ.PublishTimeout)
	}
	return nil
}

// Consumer configures cmd/consumer.
type Consumer struct {
	Common
	// Addr serves /healthz and /readyz.
	Addr string `env:"KV_CONSUMER_ADDR" envDefault:"127.0.0.1:8090"`
	// AdminAddr serves /metrics, /debug/pprof and /debug/vars, for
	// Prometheus and operators only: loopback unless a network policy
	// keeps everyone else out (docs/DESIGN.md). Defaults: the API's
	// 127.0.0.1:8181, the consumer's 127.0.0.1:8190.
	AdminAddr string `env:"KV_ADMIN_ADDR" envDefault:"127.0.0.1:8190"`
	Health    health.Config
	Consumer  consumer.Config
	Limits    kv.Limits
	Postgres  postgres.Config
	Redis     redis.Config
	RabbitMQ  rabbitmq.Config
	// Messages checks the signature of what the consumer applies.
	Messages msgsig.Config
	// Clock bounds the timestamps the consumer applies.
	Clock clock.Config
}

// Migrate configures cmd/migrate: the schema, then the queues (their type).
type Migrate struct {
	Common
	Postgres postgres.Config
	RabbitMQ rabbitmq.Config
	// Wait bounds how long migrate keeps trying to reach PostgreSQL, then
	// RabbitMQ: it may be started while they are still coming up (docker
	// compose).
	Wait time.Duration `env:"KV_MIGRATE_WAIT" envDefault:"60s"`
	// AppRoles are the PostgreSQL roles of the API and the consumer: after
	// the migrations, migrate (the owner, DATABASE_URL's role) grants them
	// CONNECT and SELECT, INSERT, UPDATE, DELETE on kv_store and SELECT on
	// kv_settings, nothing more (migrations.Grant). It always revokes
	// CONNECT from PUBLIC, so a role listed nowhere cannot connect. The
	// roles must exist (docs/SECURITY.md).
	AppRoles []string `env:"KV_MIGRATE_APP_ROLES" envSeparator:","`
	// MonitorRoles are the exporters' roles (pg_monitor members): migrate
	// grants them CONNECT alone.
	MonitorRoles []string `env:"KV_MIGRATE_MONITOR_ROLES" envSeparator:","`
}

// Process is a long-running binary's configuration.
type Process interface {
	// Base returns the settings every process has and its listen address.
	Base() (Common, string)
}

// Base implements Process.
func (c API) Base() (Common, string) { return c.Common, c.Addr }

// Base implements Process.
func (c Consumer) Base() (Common, string) { return c.Common, c.Addr }

// Load reads a configuration from the environment.
func Load[T any]() (T, error) {
	return LoadFrom[T](environ())
}

// LoadFrom reads a configuration from the given variables (tests use it).
func LoadFrom[T any](vars map[string]string) (T, error) {
	cfg, err := env.ParseAsWithOptions[T](env.Options{Environment: vars})
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func environ() map[string]string {
	return env.ToMap(os.Environ())
}

// InstanceIDOr returns the configured instance id, or host name and address.
func (c Common) InstanceIDOr(addr string) string {
	if c.InstanceID != "" {
		return c.InstanceID
	}
	host, _ := os.Hostname()
	return host + "/" + addr
}

// MarshalZerologObject logs the API configuration, secrets masked.
func (c API) MarshalZerologObject(e *zerolog.Event) {
	e.Str("addr", c.Addr).Str("admin_addr", c.AdminAddr).
		Dur("drain_delay", c.DrainDelay).
		Interface("health", c.Health).
		Interface("http", c.HTTP).
		Object("auth", c.Auth).
		Interface("limits", c.Limits).
		Interface("wait", c.Wait).
		Object("token", c.Token).
		Str("postgres", c.Postgres.String()).
		Interface("redis", c.Redis).
		Object("rabbitmq", c.RabbitMQ).
		Object("messages", c.Messages).
		Interface("clock", c.Clock)
}

// MarshalZerologObject logs the consumer configuration, secrets masked.
func (c Consumer) MarshalZerologObject(e *zerolog.Event) {
	e.Str("addr", c.Addr).Str("admin_addr", c.AdminAddr).
		Interface("limits", c.Limits).
		Str("postgres", c.Postgres.String()).
		Interface("redis", c.Redis).
		Object("rabbitmq", c.RabbitMQ).
		Object("consumer", c.Consumer).
		Object("messages", c.Messages).
		Interface("clock", c.Clock).
		Interface("health", c.Health)
}
