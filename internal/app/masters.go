package app

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/redis"
)

// runMasterCheck runs CheckMasters at once, then every interval until ctx
// is done: each shard of the Redis Cluster that its master did not mark,
// or a single server restarted since it marked its keys, has its cached
// keys purged (redis.Cache.CheckMasters says why; the purge is reported
// by reportPurges). A check that fails (a shard without a master during a
// failover, a server down) is tried again at the next tick.
func runMasterCheck(ctx context.Context, cache measuredCache, interval time.Duration, log zerolog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := cache.CheckMasters(ctx); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("redis masters not checked; will retry")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reportPurges logs and counts each purge the process's cache does, by
// whichever check found the mark not its master's: the consumer's
// runMasterCheck, an API replica's first read of a promoted master, a new
// connection to a restarted single server (redis.PurgeReport).
func reportPurges(m *metrics.ShardPurges, log zerolog.Logger) redis.PurgeReport {
	return func(ch redis.MasterChange) {
		mark := metrics.MarkOtherMaster
		if ch.Previous == "" {
			mark = metrics.MarkNone
		}
		m.Purged(mark)
		log.Warn().Str("slots", ch.Slots).Str("master", ch.Master).Str("addr", ch.Addr).
			Str("marked_by", ch.Previous).Int("purged", ch.Purged).
			Msg("redis shard not marked by its master (a promoted replica may lack updates, a restarted server reloads an older dump); its cached keys purged")
	}
}
