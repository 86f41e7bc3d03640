package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/kv"
)

// Option adjusts how Open builds the pool.
type Option func(*options)

type options struct {
	tracer    []otelpgx.Option
	configure []func(*pgxpool.Config)
}

// WithTracerProvider makes the pool's spans go to tp instead of the global
// provider (tests use an in-memory recorder).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = append(o.tracer, otelpgx.WithTracerProvider(tp)) }
}

// WithPoolConfig lets the caller adjust the parsed pool config before the
// pool is built, e.g. to set a session's search_path.
func WithPoolConfig(fn func(*pgxpool.Config)) Option {
	return func(o *options) { o.configure = append(o.configure, fn) }
}

// Open builds the connection pool described by cfg and checks that
// PostgreSQL answers. Every query gets a client span (otelpgx) carrying the
// statement text but never its parameters, which hold users' keys and
// values. An unreachable server yields an error wrapping kv.ErrUnavailable.
func Open(ctx context.Context, cfg Config, opts ...Option) (*pgxpool.Pool, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	pcfg, err := poolConfig(cfg)
	if err != nil {
		return nil, err
	}
	pcfg.ConnConfig.Tracer = otelpgx.NewTracer(append(tracerOptions(pcfg.ConnConfig), o.tracer...)...)
	for _, fn := range o.configure {
		fn(pcfg)
	}

	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL pool: %w", err)
	}
	if cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w: %w", RedactURL(cfg.URL), kv.ErrUnavailable, err)
	}
	return pool, nil
}

// tracerOptions make otelpgx's spans for a pool of cc's connections.
// otelpgx leaves query parameters out unless WithIncludeQueryParameters is
// given; it never is here. Two of its defaults are off (issue 22, measured
// by BenchmarkGet):
//   - the span per acquire of a connection from the pool: it said only
//     that a connection was free (the pool's waits are
//     kvstack_pg_pool_acquire_wait_seconds_total), and it cost 18 % of a
//     traced read's CPU in the client, building its attributes from a copy
//     of the pool's whole configuration each time;
//   - the connection's details read from the connection per span, which
//     copies its configuration (pgx's Conn.Config): they are the pool's,
//     the same for every connection (the first host of a multi-host URL,
//     as pgx keeps it in each connection's configuration), so they are
//     given once, the same attributes.
func tracerOptions(cc *pgx.ConnConfig) []otelpgx.Option {
	return []otelpgx.Option{
		otelpgx.WithDisableAcquireTracer(),
		otelpgx.WithDisableConnectionDetailsInAttributes(),
		otelpgx.WithTracerAttributes(
			attribute.String("server.address", cc.Host),
			attribute.Int("server.port", int(cc.Port)),
			attribute.String("user.name", cc.User),
			attribute.String("db.namespace", cc.Database),
		),
	}
}

func poolConfig(cfg Config) (*pgxpool.Config, error) {
	conn, err := cfg.ConnString()
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(conn)
	if err != nil {
		// pgx masks the password in its parse errors.
		return nil, fmt.Errorf("parse PostgreSQL URL: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	if cfg.MinConns > 0 {
		pcfg.MinConns = min(cfg.MinConns, pcfg.MaxConns)
	}
	if cfg.ConnectTimeout > 0 {
		pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	}
	if cfg.MaxConnLifetime > 0 {
		pcfg.MaxConnLifetime = cfg.MaxConnLifetime
	}
	if cfg.StatementTimeout > 0 {
		pcfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	}
	return pcfg, nil
}
