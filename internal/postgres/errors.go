package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kvstack/kvstack/internal/kv"
)

// translate maps a driver error to the domain's sentinels, keeping the
// driver error in the chain for logs. op names what failed; it never holds a
// key or a value.
//
//   - no row: kv.ErrNotFound.
//   - data the server rejects whatever the retry (SQLSTATE class 22 data
//     exception, 23 integrity constraint violation, 54 program limit
//     exceeded, e.g. a NUL byte or a key too large for the index):
//     kv.ErrInvalid, so the consumer dead-letters instead of retrying.
//   - everything else (refused or broken connections, timeouts, shutdown,
//     too many clients): kv.ErrUnavailable, so the caller waits and retries.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, kv.ErrNotFound)
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && len(pgErr.Code) == 5 {
		switch pgErr.Code[:2] {
		case "22", "23", "54":
			return fmt.Errorf("%s: %w: %w", op, kv.ErrInvalid, err)
		}
	}
	return fmt.Errorf("%s: %w: %w", op, kv.ErrUnavailable, err)
}

// retryable reports whether running the same transaction again may succeed:
// it lost a deadlock or a serialisation conflict to a concurrent one.
func retryable(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
