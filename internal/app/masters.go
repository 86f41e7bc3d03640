package app

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/metrics"
)

// runMasterCheck runs CheckMasters at once, then every interval until ctx
// is done: each shard of the Redis Cluster that its master did not mark,
// or a single server restarted since it marked its keys, has its cached
// keys purged (redis.Cache.CheckMasters says why), and is logged and
// counted. A check that fails (a shard without a master during a
// failover, a server down) is tried again at the next tick.
func runMasterCheck(ctx context.Context, cache measuredCache, interval time.Duration, m *metrics.Consumer, log zerolog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		changes, err := cache.CheckMasters(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("redis masters not checked; will retry")
		}
		for _, ch := range changes {
			mark := metrics.MarkOtherMaster
			if ch.Previous == "" {
				mark = metrics.MarkNone
			}
			m.ShardPurged(mark)
			log.Warn().Str("slots", ch.Slots).Str("master", ch.Master).Str("addr", ch.Addr).
				Str("marked_by", ch.Previous).Int("purged", ch.Purged).
				Msg("redis shard not marked by its master (a promoted replica may lack updates, a restarted server reloads an older dump); its cached keys purged")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
