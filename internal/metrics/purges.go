package metrics

import "github.com/prometheus/client_golang/prometheus"

// ShardPurges counts the cache's purges of keys that their master had not
// marked: a Redis Cluster shard whose master changed, or a single server
// restarted. Both processes register it: whichever checks a mark first
// after a promotion or a restart does the purge (redis.PurgeReport).
type ShardPurges struct {
	purges *prometheus.CounterVec
}

// The marks a purged shard or server was found with.
const (
	MarkOtherMaster = "other_master"
	MarkNone        = "none"
)

// NewShardPurges registers the purge counter on reg.
func NewShardPurges(reg prometheus.Registerer) *ShardPurges {
	m := &ShardPurges{
		purges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_cache_shard_purges_total",
			Help: "Redis Cluster shards (or a single server's prefix) whose cached keys this process purged because their master had not marked them, by the mark found: other_master (a replica promoted, which may lack its master's last updates; a server restarted, which reloads an older dump), none (a new cluster, a node that lost its data, a purged cache).",
		}, []string{"mark"}),
	}
	for _, mark := range []string{MarkOtherMaster, MarkNone} {
		m.purges.WithLabelValues(mark)
	}
	reg.MustRegister(m.purges)
	return m
}

// Purged counts one shard purged, by the mark found.
func (m *ShardPurges) Purged(mark string) {
	m.purges.WithLabelValues(mark).Inc()
}
