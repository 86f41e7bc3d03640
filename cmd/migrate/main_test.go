package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/nettest"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/postgres/pgtest"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

func TestConnectRetriesOnlyAnUnreachableServer(t *testing.T) {
	unreachable := fmt.Errorf("connect: %w", kv.ErrUnavailable)
	badURL := errors.New("parse PostgreSQL URL: bad")
	tests := []struct {
		name         string
		wait         time.Duration
		errs         []error // what open returns, attempt by attempt; then nil
		wantErr      error
		wantAttempts int // at least, when the wait runs out: timing decides
	}{
		{"up at once", time.Second, nil, nil, 1},
		{"up at the third attempt", 10 * time.Second, []error{unreachable, unreachable}, nil, 3},
		{"a bad URL is not retried", 10 * time.Second, []error{badURL, badURL}, badURL, 1},
		{"gives up after wait", 300 * time.Millisecond, []error{unreachable, unreachable, unreachable, unreachable, unreachable}, kv.ErrUnavailable, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attempts := 0
			start := time.Now()
			_, err := connect(context.Background(), "PostgreSQL", tt.wait, zerolog.Nop(), func(context.Context) (int, error) {
				attempts++
				if attempts <= len(tt.errs) {
					return 0, tt.errs[attempts-1]
				}
				return 1, nil
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if attempts != tt.wantAttempts && (tt.wantErr != kv.ErrUnavailable || attempts < tt.wantAttempts) {
				t.Errorf("%d attempts, want %d", attempts, tt.wantAttempts)
			}
			if took := time.Since(start); took > tt.wait+time.Second {
				t.Errorf("took %s, beyond the wait of %s", took, tt.wait)
			}
		})
	}
}

// migrate started before PostgreSQL accepts connections (as docker compose
// may start it) waits for it and then migrates, instead of failing once.
// The server "comes up" as a TCP proxy to the real one, opened a second
// after migrate started.
func TestMigrateWaitsForALatePostgres(t *testing.T) {
	pool := pgtest.MustEmptyPool(t) // an empty schema of its own
	schema := pool.Config().ConnConfig.RuntimeParams["search_path"]
	real, err := url.Parse(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	late := ln.Addr().String()
	ln.Close() // nothing listens there until the proxy opens it

	u := *real
	u.Host = late
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	cfg, err := config.LoadFrom[config.Migrate](map[string]string{"DATABASE_URL": u.String(), "KV_MIGRATE_WAIT": "20s", "PG_CONNECT_TIMEOUT": "1s"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.RabbitMQ = rabbittest.MustConfig(t) // queues of its own, never the shared add_key

	done := make(chan error, 1)
	go func() { done <- run(context.Background(), cfg, zerolog.Nop()) }()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("migrate ended before PostgreSQL came up: %v", err)
	default:
	}
	nettest.NewProxyAt(t, late, real.Host)
	if err := <-done; err != nil {
		t.Fatalf("migrate against a late PostgreSQL (%s): %v", postgres.RedactURL(u.String()), err)
	}
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&n); err != nil || n == 0 {
		t.Fatalf("goose_db_version in %s: %d rows, %v", schema, n, err)
	}
	rabbittest.Count(t, cfg.RabbitMQ, cfg.RabbitMQ.QueueAdd) // fails unless migrate declared it
}
