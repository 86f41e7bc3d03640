package redis

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/envdefault"
)

// Config is what the adapter needs to reach Redis and lay out its keys.
type Config struct {
	// Addr is one Redis server, or the seed nodes of a Redis Cluster
	// separated by commas: several addresses mean a cluster. Each is
	// host:port, or rediss://host:port for TLS (then all must be; see
	// REDIS_TLS_CA_FILE), redis://host:port being host:port.
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
	// TLSCAFile is the PEM file of the certificate authorities that sign
	// the servers' certificates, when REDIS_ADDR is rediss:// (empty: the
	// system's). It is read when a process starts.
	TLSCAFile string `env:"REDIS_TLS_CA_FILE"`
	// TLSServerName is the name every server's certificate must carry, when
	// REDIS_ADDR is rediss:// (empty: the host of the address dialled, which
	// for a cluster's nodes is the address each announces).
	TLSServerName string `env:"REDIS_TLS_SERVER_NAME"`
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

// Addrs lists the addresses of REDIS_ADDR, in order, as host:port.
func (c Config) Addrs() []string {
	var addrs []string
	for _, a := range c.entries() {
		addrs = append(addrs, strings.TrimPrefix(strings.TrimPrefix(a, schemeTLS), schemePlain))
	}
	return addrs
}

const (
	schemePlain = "redis://"
	schemeTLS   = "rediss://"
)

// entries are REDIS_ADDR's items as written.
func (c Config) entries() []string {
	var entries []string
	for a := range strings.SplitSeq(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			entries = append(entries, a)
		}
	}
	return entries
}

// TLS reports whether REDIS_ADDR asks for TLS (rediss://).
func (c Config) TLS() bool {
	e := c.entries()
	return len(e) > 0 && strings.HasPrefix(e[0], schemeTLS)
}

// validAddrs reports an item of REDIS_ADDR that is no host:port, and a
// list that mixes TLS with plain text.
func (c Config) validAddrs() error {
	tls := c.TLS()
	for _, a := range c.entries() {
		if strings.HasPrefix(a, schemeTLS) != tls {
			return fmt.Errorf("redis config: REDIS_ADDR mixes rediss:// with plain-text addresses (%s)", a)
		}
		hp := strings.TrimPrefix(strings.TrimPrefix(a, schemeTLS), schemePlain)
		if _, _, err := net.SplitHostPort(hp); err != nil || strings.ContainsAny(hp, "/@") {
			return fmt.Errorf("redis config: REDIS_ADDR item %q is not host:port, redis://host:port or rediss://host:port", a)
		}
	}
	if !tls && (c.TLSCAFile != "" || c.TLSServerName != "") {
		// A CA file given for a plain-text connection is a mistake that
		// would otherwise go unnoticed: nothing would be encrypted.
		return fmt.Errorf("redis config: REDIS_TLS_CA_FILE or REDIS_TLS_SERVER_NAME is set, but REDIS_ADDR is not rediss://")
	}
	return nil
}

// IsCluster reports whether the addresses are a Redis Cluster's.
func (c Config) IsCluster() bool { return c.Cluster || len(c.Addrs()) > 1 }

// Validate reports a configuration the cache cannot work with.
func (c Config) Validate() error {
	switch {
	case len(c.Addrs()) == 0:
		return fmt.Errorf("redis config: REDIS_ADDR is empty")
	case c.validAddrs() != nil:
		return c.validAddrs()
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
