package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kvstack/kvstack/internal/kv"
)

// Store is the durable state of kvstack, kept in the kv_store table of the
// pool's search_path.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store over pool, whose schema the migrations created.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

var _ kv.Store = (*Store)(nil)

// Get returns the key's entry, a tombstone (Deleted) included, or an error
// wrapping kv.ErrNotFound when the table holds no row for it.
func (s *Store) Get(ctx context.Context, key string) (kv.Entry, error) {
	row := s.pool.QueryRow(ctx,
		`SELECT key, value, last_updated, op_id, deleted, written_by FROM kv_store WHERE key = $1`, key)
	e, err := scanEntry(row)
	if err != nil {
		return kv.Entry{}, translate("get", err)
	}
	return e, nil
}

// List returns up to limit live entries whose keys start with prefix and
// are greater than after, in bytewise key order. Paging by the last key returned walks the primary key
// index, so every page costs the same however deep it is.
func (s *Store) List(ctx context.Context, prefix, after string, limit int) ([]kv.Entry, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list: limit %d: %w", limit, kv.ErrInvalid)
	}
	// The keys under prefix are a range of the primary key's index, [prefix,
	// end): bounded on both sides, the scan stops at the range's end
	// rather than reading on to the table's.
	query := `SELECT key, value, last_updated, op_id, deleted, written_by FROM kv_store
		 WHERE key > $1 AND key >= $2 AND NOT deleted
		 ORDER BY key
		 LIMIT $3`
	args := []any{after, prefix, limit}
	if end, ok := kv.PrefixEnd(prefix); ok {
		query = `SELECT key, value, last_updated, op_id, deleted, written_by FROM kv_store
		 WHERE key > $1 AND key >= $2 AND key < $4 AND NOT deleted
		 ORDER BY key
		 LIMIT $3`
		args = append(args, end)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, translate("list", err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (kv.Entry, error) { return scanEntry(r) })
	if err != nil {
		return nil, translate("list", err)
	}
	return entries, nil
}

// Ping checks that PostgreSQL answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	return translate("ping", s.pool.Ping(ctx))
}

// Now is PostgreSQL's clock (clock_timestamp(), not the transaction's
// start): the reference every process measures its own clock against
// (package clock).
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := s.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&t); err != nil {
		return time.Time{}, translate("now", err)
	}
	return t, nil
}

func scanEntry(row pgx.Row) (kv.Entry, error) {
	var (
		e     kv.Entry
		value *string
		ts    time.Time
		opID  uuid.UUID
		by    *string
	)
	if err := row.Scan(&e.Key, &value, &ts, &opID, &e.Deleted, &by); err != nil {
		return kv.Entry{}, err
	}
	if value != nil {
		e.Value = *value
	}
	if by != nil {
		e.WrittenBy = *by
	}
	e.Version = kv.Version{Time: kv.Timestamp(ts), OpID: opID}
	return e, nil
}

// TokenKey returns the key that signs version tokens: kv_settings'
// token_key, made at random by the migrations, the same for every process
// of the deployment.
func (s *Store) TokenKey(ctx context.Context) ([]byte, error) {
	var key string
	err := s.pool.QueryRow(ctx, `SELECT value FROM kv_settings WHERE name = 'token_key'`).Scan(&key)
	if err != nil {
		return nil, translate("read token key", err)
	}
	return []byte(key), nil
}
