package postgres

import (
	"context"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
)

// purgeChunk bounds the rows one purge statement deletes, so that each
// statement holds its locks for milliseconds, not for the whole purge.
const purgeChunk = 1000

// purgeSQL deletes the oldest expired tombstones, found through the partial
// index. SKIP LOCKED passes over rows a batch apply holds (it may be reviving
// the key); the next purge gets them. The outer conditions re-check each row
// as it is deleted.
const purgeSQL = `
DELETE FROM kv_store
 WHERE key IN (SELECT key FROM kv_store
                WHERE deleted AND last_updated < $1
                ORDER BY last_updated
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
   AND deleted AND last_updated < $1`

// PurgeTombstones deletes the tombstones older than olderThan, chunk by chunk,
// each chunk its own transaction, and returns how many it deleted. After a
// tombstone is gone an operation on its key older than the delete could
// apply again, so olderThan must lie further back than any operation can
// wait in the queue. Cancelling ctx stops between chunks; the count then
// says what was deleted.
func (s *Store) PurgeTombstones(ctx context.Context, olderThan time.Time) (int64, error) {
	cutoff := kv.Timestamp(olderThan)
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, purgeSQL, cutoff, purgeChunk)
		if err != nil {
			return total, translate("purge tombstones", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < purgeChunk {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, translate("purge tombstones", err)
		}
	}
}
