package consumer

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// TombstoneStore purges tombstones: PostgreSQL in production.
type TombstoneStore interface {
	PurgeTombstones(ctx context.Context, olderThan time.Time) (int64, error)
}

// RunTombstonePurge deletes, every interval until ctx is done, the
// tombstones older than retention.
// Retention must exceed the longest time an operation can wait in the
// queue: a put older than a purged tombstone would resurrect its key.
// Several consumers purging at once is harmless.
func RunTombstonePurge(ctx context.Context, store TombstoneStore, retention, interval time.Duration, log zerolog.Logger) {
	every(ctx, interval, func() {
		n, err := store.PurgeTombstones(ctx, time.Now().Add(-retention))
		if err != nil {
			log.Warn().Err(err).Msg("tombstone purge failed; will retry")
			return
		}
		if n > 0 {
			log.Info().Int64("purged", n).Dur("retention", retention).Msg("tombstones purged")
		}
	})
}

// every runs fn every interval until ctx is done.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
