package engines

import (
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/lab/native"
)

// RedisClient is a client of the stack's Redis, a server or the Redis
// Cluster REDIS_ADDR lists, as the lab's checks use it (the chaos
// campaigns compare every cache entry with PostgreSQL): its default user,
// which may read any key, with the stack's password on the engines the
// stack locks (Locked), over TLS trusting REDIS_TLS_CA_FILE when
// REDIS_ADDR is rediss://. It never retries.
func RedisClient(s *native.Settings) (goredis.UniversalClient, error) {
	var addrs []string
	tls := false
	for a := range strings.SplitSeq(s.Get("REDIS_ADDR"), ",") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(a), "rediss://"); ok {
			a, tls = rest, true
		}
		addrs = append(addrs, strings.TrimPrefix(strings.TrimSpace(a), "redis://"))
	}
	opts := &goredis.UniversalOptions{Addrs: addrs, IsClusterMode: len(addrs) > 1, MaxRetries: -1}
	if Locked(s) {
		opts.Password = s.Secret("REDIS_DEFAULT")
	}
	if tls {
		cfg, err := native.ClientTLS(s.Get("REDIS_TLS_CA_FILE"))
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = cfg
	}
	return goredis.NewUniversalClient(opts), nil
}
