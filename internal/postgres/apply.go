package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kvstack/kvstack/internal/kv"
)

// upsertSQL applies a whole batch in one statement. A row is written when
// the key is new or the stored version is older than the op's; the stored
// row wins otherwise, which makes redelivery and out-of-order delivery
// harmless. RETURNING names the keys actually written. Rows are processed
// in array order, which ApplyBatch makes key order, so concurrent batches
// lock shared keys in the same order and rarely deadlock.
var upsertSQL = UpsertStatement("kv_store")

// UpsertStatement is the last-writer-wins batch upsert into table (kv_store's
// shape), with the keys, values, timestamps, op ids, tombstone flags and
// writers (NULL: none named) as its six array parameters. The benchmark runs it on a scratch table as the
// baseline of the consumer's apply.
func UpsertStatement(table string) string {
	return `
INSERT INTO ` + table + ` AS s (key, value, last_updated, op_id, deleted, written_by)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::uuid[], $5::bool[], $6::text[])
ON CONFLICT (key) DO UPDATE
   SET value = EXCLUDED.value,
       last_updated = EXCLUDED.last_updated,
       op_id = EXCLUDED.op_id,
       deleted = EXCLUDED.deleted,
       written_by = EXCLUDED.written_by
 WHERE (s.last_updated, s.op_id) < (EXCLUDED.last_updated, EXCLUDED.op_id)
RETURNING key`
}

// storedSQL reads the versions that beat or equal the ops the upsert did not
// write. ON CONFLICT locked those rows, so they cannot change before commit.
const storedSQL = `SELECT key, last_updated, op_id FROM kv_store WHERE key = ANY($1::text[])`

// maxAttempts bounds retries of a batch that lost a deadlock or a
// serialisation conflict.
const maxAttempts = 4

// ApplyBatch applies ops, which must have distinct keys (kv.Winners reduces a
// batch to that), in one transaction under the last-writer-wins rule, and
// returns one outcome per op, in the order of ops: kv.Applied when the op is
// now the key's state, kv.Duplicate when the key already held exactly this
// op, kv.Stale when it held a newer one. A delete writes a tombstone; a put
// newer than a tombstone revives the key.
//
// The same transaction notifies the ops applied (news.go), so that their
// waiters hear of them exactly when they are committed.
//
// The outcomes are returned only once the transaction has committed. On
// error nothing was applied: an error wrapping kv.ErrInvalid means the
// server rejects some op's data (retrying cannot help); kv.ErrUnavailable
// means the batch may succeed later.
func (s *Store) ApplyBatch(ctx context.Context, ops []kv.Op) ([]kv.Outcome, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	args, err := newBatchArgs(ops)
	if err != nil {
		return nil, err
	}
	var outcomes []kv.Outcome
	news := true
	err = withRetry(ctx, func() error {
		var err error
		outcomes, err = s.applyOnce(ctx, ops, args, news)
		if newsRefused(err, news) {
			// News is best-effort (waiters poll the store); the batch is
			// not. Apply it again, untold.
			news = false
			outcomes, err = s.applyOnce(ctx, ops, args, news)
		}
		return err
	})
	if err != nil {
		return nil, translate("apply batch", err)
	}
	return outcomes, nil
}

func (s *Store) applyOnce(ctx context.Context, ops []kv.Op, a batchArgs, news bool) ([]kv.Outcome, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	// A no-op once committed; otherwise it ends the failed transaction.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	rows, err := tx.Query(ctx, upsertSQL, a.keys, a.values, a.times, a.opIDs, a.deleted, a.writers)
	if err != nil {
		return nil, err
	}
	written, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	outcomes, err := s.outcomes(ctx, tx, ops, written)
	if err != nil {
		return nil, err
	}
	if news {
		if err := notifyApplied(ctx, tx, ops, outcomes); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, &commitError{err}
	}
	return outcomes, nil
}

// commitError is an error of COMMIT itself.
type commitError struct{ err error }

func (e *commitError) Error() string { return "commit: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// newsRefused reports whether a transaction that sent news failed at
// COMMIT for a program limit: PostgreSQL's NOTIFY queue is full (a
// listener that stopped reading holds it, 8 GB). It must not pass for a
// data error (class 54 is one for translate), which would dead-letter the
// batch; the only other class-54 errors come from the statements, before
// COMMIT.
func newsRefused(err error, news bool) bool {
	var ce *commitError
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return news && errors.As(err, &ce) && ok && strings.HasPrefix(pgErr.Code, "54")
}

// notifyApplied sends the news of the ops applied, in the transaction that
// applies them (news.go): one more statement per batch that applied
// anything, whatever its size.
func notifyApplied(ctx context.Context, tx pgx.Tx, ops []kv.Op, outcomes []kv.Outcome) error {
	news := make([]News, 0, len(ops))
	for i, o := range outcomes {
		if o == kv.Applied {
			news = append(news, News{Key: ops[i].Key, Version: ops[i].Version})
		}
	}
	payloads, _ := encodeNews(news)
	if len(payloads) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, notifySQL, payloads)
	return err
}

// outcomes classifies each op: written ones are Applied; for the others it
// compares the stored version with the op's.
func (s *Store) outcomes(ctx context.Context, tx pgx.Tx, ops []kv.Op, written []string) ([]kv.Outcome, error) {
	out := make([]kv.Outcome, len(ops))
	if len(written) == len(ops) {
		return out, nil // all Applied, the common case: no second query
	}
	applied := make(map[string]bool, len(written))
	for _, k := range written {
		applied[k] = true
	}
	var rest []string
	for _, op := range ops {
		if !applied[op.Key] {
			rest = append(rest, op.Key)
		}
	}
	rows, err := tx.Query(ctx, storedSQL, rest)
	if err != nil {
		return nil, err
	}
	stored := make(map[string]kv.Version, len(rest))
	var (
		key  string
		ts   time.Time
		opID uuid.UUID
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &ts, &opID}, func() error {
		stored[key] = kv.Version{Time: kv.Timestamp(ts), OpID: opID}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, op := range ops {
		if applied[op.Key] {
			continue // zero value: Applied
		}
		v, ok := stored[op.Key]
		want := kv.Version{Time: kv.Timestamp(op.Version.Time), OpID: op.Version.OpID}
		if !ok {
			// The upsert locked the rows it did not write, so this cannot
			// happen unless the schema is not what the migrations made.
			return nil, fmt.Errorf("op %d: neither written nor stored", i)
		}
		switch c := v.Compare(want); {
		case c == 0:
			out[i] = kv.Duplicate
		case c > 0:
			out[i] = kv.Stale
		default:
			return nil, fmt.Errorf("op %d: not written although newer than the stored row", i)
		}
	}
	return out, nil
}

// batchArgs are the ops as the column arrays that unnest turns into rows,
// in key order.
type batchArgs struct {
	keys   []string
	values []*string // NULL for deletes: tombstones hold no value
	times  []time.Time
	// The op ids as bytes: pgx encodes [16]byte itself, where a uuid.UUID
	// goes through its driver.Valuer, a string per row (4 % of the
	// consumer's CPU in lab/bench/profiles/consumer-apply-cpu.pprof).
	opIDs   [][16]byte
	deleted []bool
	writers []*string // NULL when the op names no writer
}

// newBatchArgs lays ops out in key order, whatever order they came in, so
// that row locks are always taken in one order. Two ops on one key would
// make the upsert fail ("cannot affect row a second time"); that is the
// caller's bug, reported as such.
func newBatchArgs(ops []kv.Op) (batchArgs, error) {
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	byKey := func(i, j int) int { return strings.Compare(ops[i].Key, ops[j].Key) }
	if !slices.IsSortedFunc(order, byKey) {
		slices.SortFunc(order, byKey)
	}
	a := batchArgs{
		keys:    make([]string, len(ops)),
		values:  make([]*string, len(ops)),
		times:   make([]time.Time, len(ops)),
		opIDs:   make([][16]byte, len(ops)),
		deleted: make([]bool, len(ops)),
		writers: make([]*string, len(ops)),
	}
	for n, i := range order {
		op := ops[i]
		if n > 0 && op.Key == a.keys[n-1] {
			return batchArgs{}, fmt.Errorf("apply batch: two ops on one key (reduce with kv.Winners): %w", kv.ErrInvalid)
		}
		a.keys[n] = op.Key
		a.times[n] = kv.Timestamp(op.Version.Time)
		a.opIDs[n] = op.Version.OpID
		if op.WrittenBy != "" {
			a.writers[n] = &ops[i].WrittenBy
		}
		switch op.Kind {
		case kv.KindPut:
			a.values[n] = &op.Value
		case kv.KindDelete:
			a.deleted[n] = true
		default:
			return batchArgs{}, fmt.Errorf("apply batch: op %d: unknown kind %q: %w", i, op.Kind, kv.ErrInvalid)
		}
	}
	return a, nil
}

// withRetry runs fn again, after a short jittered pause, when it loses a
// deadlock or serialisation conflict: the transaction rolled back whole, so
// running it again is safe.
func withRetry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		pause := time.Duration(attempt)*5*time.Millisecond + rand.N(5*time.Millisecond)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}
