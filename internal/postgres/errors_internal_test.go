package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kvstack/kvstack/internal/kv"
)

func TestTranslate(t *testing.T) {
	pgErr := func(code string) error {
		return fmt.Errorf("driver: %w", &pgconn.PgError{Code: code, Message: "m"})
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"no rows", pgx.ErrNoRows, kv.ErrNotFound},
		{"NUL byte (22021)", pgErr("22021"), kv.ErrInvalid},
		{"value too long (22001)", pgErr("22001"), kv.ErrInvalid},
		{"check violation (23514)", pgErr("23514"), kv.ErrInvalid},
		{"index row too large (54000)", pgErr("54000"), kv.ErrInvalid},
		{"admin shutdown (57P01)", pgErr("57P01"), kv.ErrUnavailable},
		{"connection failure (08006)", pgErr("08006"), kv.ErrUnavailable},
		{"too many connections (53300)", pgErr("53300"), kv.ErrUnavailable},
		{"deadlock after retries (40P01)", pgErr("40P01"), kv.ErrUnavailable},
		{"statement timeout (57014)", pgErr("57014"), kv.ErrUnavailable},
		{"deadline", context.DeadlineExceeded, kv.ErrUnavailable},
		{"other", errors.New("connection refused"), kv.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := translate("op", tt.err)
			if !errors.Is(got, tt.want) {
				t.Errorf("translate(%v): got %v, want it to wrap %v", tt.err, got, tt.want)
			}
			if tt.err != pgx.ErrNoRows && !errors.Is(got, tt.err) {
				t.Errorf("translate(%v): got %v, which lost the driver error", tt.err, got)
			}
		})
	}
	if got := translate("op", nil); got != nil {
		t.Errorf("translate(nil): got %v, want nil", got)
	}
}

func TestWithRetry(t *testing.T) {
	deadlock := &pgconn.PgError{Code: "40P01"}
	serialization := &pgconn.PgError{Code: "40001"}
	invalid := &pgconn.PgError{Code: "22021"}
	tests := []struct {
		name      string
		errs      []error // returned by successive calls; nil after the end
		wantCalls int
		wantErr   error
	}{
		{"success", nil, 1, nil},
		{"deadlock then success", []error{deadlock, deadlock}, 3, nil},
		{"serialization failure then success", []error{serialization}, 2, nil},
		{"deadlock every time", []error{deadlock, deadlock, deadlock, deadlock, deadlock}, maxAttempts, deadlock},
		{"not retryable", []error{invalid}, 1, invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := withRetry(t.Context(), func() error {
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls {
				t.Errorf("calls: got %d, want %d", calls, tt.wantCalls)
			}
			if !errors.Is(err, tt.wantErr) && !(err == nil && tt.wantErr == nil) {
				t.Errorf("error: got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestWithRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	err := withRetry(ctx, func() error {
		calls++
		cancel()
		return &pgconn.PgError{Code: "40P01"}
	})
	if calls != 1 {
		t.Errorf("calls: got %d, want 1", calls)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error: got %v, want it to wrap context.Canceled", err)
	}
}

// A full NOTIFY queue fails COMMIT with a program limit (54000): the batch
// is applied again without news, never dead-lettered as a data error.
func TestNewsRefused(t *testing.T) {
	full := &pgconn.PgError{Code: "54000", Message: "too many notifications in the NOTIFY queue"}
	for _, tt := range []struct {
		name string
		err  error
		news bool
		want bool
	}{
		{"queue full at commit", &commitError{full}, true, true},
		{"no news was sent", &commitError{full}, false, false},
		{"a statement's program limit (a key too large)", fmt.Errorf("upsert: %w", full), true, false},
		{"a lost connection at commit", &commitError{errors.New("conn closed")}, true, false},
		{"a serialisation failure at commit", &commitError{&pgconn.PgError{Code: "40001"}}, true, false},
		{"no error", nil, true, false},
	} {
		if got := newsRefused(tt.err, tt.news); got != tt.want {
			t.Errorf("%s: newsRefused = %v, want %v", tt.name, got, tt.want)
		}
	}
}
