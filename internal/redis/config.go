package redis

import (
	"fmt"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/envdefault"
)

// Config is what the adapter needs to reach Redis and lay out its keys.
type Config struct {
	// Addr is one Redis server, or the seed nodes of a Redis Cluster
	// separated by commas: several addresses mean a cluster.
	Addr string `env:"REDIS_ADDR" envDefault:"127.0.0.1:6379"`
	// Cluster makes a single address a cluster's seed (a cluster behind one
	// service name, say).
	Cluster bool `env:"REDIS_CLUSTER" envDefault:"false"`
	// Username is the ACL user (Redis 6 and later) every node knows, with
	// Password; empty, the default user (Password then is requirepass's).
	// Least privilege (docs/SECURITY.md): a user limited to REDIS_KEY_PREFIX's
	// keys and the cache's commands.
	Username string `env:"REDIS_USERNAME"`
	// Password authenticates to every node; it is masked when logged.
	Password Secret `env:"REDIS_PASSWORD"`
	// DB is the database of a single server; a cluster has only 0.
	DB int `env:"REDIS_DB" envDefault:"0"`

	// KeyPrefix namespaces every key the cache owns; Purge removes exactly
	// the keys under it. Under it, a client key's entry is <prefix><key>,
	// and the cache's own keys are <prefix>\x00<name> (see internalMark).
	KeyPrefix string `env:"REDIS_KEY_PREFIX" envDefault:"kv:"`
	// TTL bounds how long a live value stays cached; TombstoneTTL how long a
	// delete is remembered. Both must be far longer than a reader's fill
	// latency (see the package doc).
	TTL          time.Duration `env:"REDIS_TTL" envDefault:"1h"`
	TombstoneTTL time.Duration `env:"REDIS_TOMBSTONE_TTL" envDefault:"10m"`

	// PoolSize caps the connections to each node.
	PoolSize int `env:"REDIS_POOL_SIZE" envDefault:"32"`
	// Short timeouts and few retries: a cache that does not answer quickly is
	// better skipped than waited for. DialTimeout bounds a connection's
	// set-up, ReadTimeout and WriteTimeout one command's, and MaxRetries is
	// how many times a failed command is tried again (on a cluster, the nodes
	// it may be redirected to).
	DialTimeout  time.Duration `env:"REDIS_DIAL_TIMEOUT" envDefault:"1s"`
	ReadTimeout  time.Duration `env:"REDIS_READ_TIMEOUT" envDefault:"500ms"`
	WriteTimeout time.Duration `env:"REDIS_WRITE_TIMEOUT" envDefault:"500ms"`
	MaxRetries   int           `env:"REDIS_MAX_RETRIES" envDefault:"1"`
}

// DefaultConfig() is the configuration used when the environment sets
// nothing: the envDefault tags above.
func DefaultConfig() Config { return envdefault.Of[Config]() }

// Addrs lists the addresses of REDIS_ADDR, in order.
func (c Config) Addrs() []string {
	var addrs []string
	for a := range strings.SplitSeq(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// IsCluster reports whether the addresses are a Redis Cluster's.
func (c Config) IsCluster() bool { return c.Cluster || len(c.Addrs()) > 1 }

// Validate reports a configuration the cache cannot work with.
func (c Config) Validate() error {
	switch {
	case len(c.Addrs()) == 0:
		return fmt.Errorf("redis config: REDIS_ADDR is empty")
	case c.IsCluster() && c.DB != 0:
		return fmt.Errorf("redis config: REDIS_DB is %d, but a Redis Cluster has only database 0", c.DB)
	case c.KeyPrefix == "":
		// Purge would remove every key of the database.
		return fmt.Errorf("redis config: REDIS_KEY_PREFIX is empty")
	case c.IsCluster() && strings.ContainsAny(c.KeyPrefix, "{}"):
		// A hash tag in the prefix would put every key in one slot, and
		// leave the other shards without a slot for their marks.
		return fmt.Errorf("redis config: REDIS_KEY_PREFIX %q has a brace, the start of a hash tag, and REDIS_ADDR is a cluster", c.KeyPrefix)
	case c.TTL < time.Millisecond || c.TombstoneTTL < time.Millisecond:
		// PEXPIRE takes whole milliseconds, and 0 would delete the key.
		return fmt.Errorf("redis config: REDIS_TTL and REDIS_TOMBSTONE_TTL must be at least 1ms")
	}
	return nil
}

// Secret is a string that never shows itself when printed, marshalled to
// JSON or logged.
type Secret string

const masked = "********"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return masked
}

// GoString masks %#v too.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// MarshalText masks the secret in JSON and in zerolog's Interface.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
