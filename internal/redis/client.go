package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/tlsconf"
)

// NewClient builds a traced client for cfg without contacting Redis, so that
// a process can start while Redis is down and degrade to PostgreSQL: a
// client of one server, or of a Redis Cluster (which finds the cluster's
// masters and replicas from its seed addresses, and follows their slots as
// they move). On a single server, each new connection first checks the
// server's mark (markCheck), and a purge it does is told to onPurge (nil:
// to nobody). Open is NewClient followed by a ping.
func NewClient(cfg Config, onPurge PurgeReport) (goredis.UniversalClient, error) {
	err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	retries, redirects := attempts(cfg)
	opts := &goredis.UniversalOptions{
		Addrs:         cfg.Addrs(),
		IsClusterMode: cfg.IsCluster(),
		Username:      cfg.Username,
		Password:      string(cfg.Password),
		DB:            cfg.DB,
		PoolSize:      cfg.PoolSize, // per node

		DialTimeout:           cfg.DialTimeout,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		ContextTimeoutEnabled: true, // a request's deadline bounds its cache calls
		// The command retry loop already redials; the pool's own dial retries
		// (5 × 100 ms by default) would multiply into seconds per failed read.
		MaxRetries:      retries,
		MaxRedirects:    redirects,
		MaxRetryBackoff: 100 * time.Millisecond,
		DialerRetries:   1,
		// Open-source Redis: skip the maintenance-notification handshake
		// (a managed service's).
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if cfg.TLS() {
		// One configuration for every node: with no server name set,
		// crypto/tls checks each against the address it dials.
		if opts.TLSConfig, err = tlsconf.Client(cfg.TLSCAFile, cfg.TLSServerName); err != nil {
			return nil, fmt.Errorf("redis config: REDIS_TLS_CA_FILE: %w", err)
		}
	}
	if !cfg.IsCluster() {
		// A restarted server's dump is purged before any connection to it
		// serves a read (Cache.checkServer); a cluster's shards have their
		// masters' marks instead (Cache.CheckMasters).
		opts.OnConnect = markCheck(cfg.KeyPrefix, opts.Addrs[0], onPurge)
	}
	client := goredis.NewUniversalClient(opts)
	if cc, ok := client.(*goredis.ClusterClient); ok {
		cc.AddHook(reloadOnFailure{cc: cc})
	}
	// db.statement would carry keys and values into every span: leave it out.
	// The caller's file and line are always this package: not worth the
	// runtime.Callers on every command.
	if err := redisotel.InstrumentTracing(client,
		redisotel.WithDBStatement(false),
		redisotel.WithCallerEnabled(false),
	); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis %s: instrument tracing: %w", cfg.Addr, err)
	}
	return client, nil
}

// Open builds the client and checks that Redis answers. The error names
// Redis and its address and wraps kv.ErrUnavailable when it does not.
// Its purges are told to nobody: it serves tests and tools.
func Open(ctx context.Context, cfg Config) (goredis.UniversalClient, error) {
	client, err := NewClient(cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis %s: ping: %w: %w", cfg.Addr, kv.ErrUnavailable, err)
	}
	return client, nil
}

// attempts is the retries of each node's client and the redirects of a
// cluster client (go-redis' MaxRetries and MaxRedirects; 0 means its
// default, -1 none) that make a command tried 1 + REDIS_MAX_RETRIES times
// in all, as on a single server. go-redis' defaults in a cluster tried a
// command up to four times on top of each node's own retries: a read of a
// frozen master's slots took 2.2 s to fail, 4 read timeouts and more.
func attempts(cfg Config) (retries, redirects int) {
	if !cfg.IsCluster() {
		return cfg.MaxRetries, 0
	}
	if cfg.MaxRetries <= 0 {
		return -1, -1
	}
	return -1, cfg.MaxRetries
}
