package postgres_test

import (
	"context"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/migrations"
)

// privateTLS is a PostgreSQL of this package's own that serves TLS
// (ssl=on) with a certificate for localhost only, signed by a CA of its
// own; it is started on first use.
var privateTLS = enginetest.Postgres{TLS: true}

// PG_SSLMODE=verify-full with PG_SSLROOTCERT, over a DATABASE_URL that
// says sslmode=disable, encrypts what migrate, the API and the consumer
// open (the pool and the listener): the schema migrated, a write and its
// read, and its news heard, every session of them encrypted. The same
// server is refused under another authority or another name.
func TestTLS(t *testing.T) {
	files := privateTLS.TLSFiles(t)
	u, err := url.Parse(privateTLS.URL(t)) // the superuser's, sslmode=disable
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	at := func(host string) string {
		v := *u
		v.Host = net.JoinHostPort(host, port)
		return v.String()
	}
	other, err := engine.MakeTLS(t.TempDir(), enginetest.TLSHost) // the same name, another authority
	if err != nil {
		t.Fatal(err)
	}
	config := func(t *testing.T, vars map[string]string) postgres.Config {
		t.Helper()
		cfg, err := env.ParseAsWithOptions[postgres.Config](env.Options{Environment: vars})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			env  map[string]string
			want string
		}{
			{"another CA", map[string]string{"DATABASE_URL": at(enginetest.TLSHost), "PG_SSLMODE": "verify-full", "PG_SSLROOTCERT": other.CA},
				"certificate signed by unknown authority"},
			{"an address not in the certificate", map[string]string{"DATABASE_URL": at("127.0.0.1"), "PG_SSLMODE": "verify-full", "PG_SSLROOTCERT": files.CA},
				"doesn't contain any IP SANs"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				pool, err := postgres.Open(ctx, config(t, tc.env))
				if err == nil {
					pool.Close()
					t.Fatalf("Open(%v) connected; want it refused (%s)", tc.env, tc.want)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Open(%v): %v; want the error to say %q", tc.env, err, tc.want)
				}
			})
		}
	})

	t.Run("the right CA and name", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cfg := config(t, map[string]string{"DATABASE_URL": at(enginetest.TLSHost), "PG_SSLMODE": "verify-full", "PG_SSLROOTCERT": files.CA})
		pool, err := postgres.Open(ctx, cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer pool.Close()
		if err := migrations.Apply(ctx, pool); err != nil { // what cmd/migrate does
			t.Fatalf("migrate over TLS: %v", err)
		}
		store := postgres.NewStore(pool)
		channel, err := store.NewsChannel(ctx)
		if err != nil {
			t.Fatalf("NewsChannel: %v", err)
		}
		s := newSink()
		l, err := postgres.NewListener(cfg, channel, s, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
		if err != nil {
			t.Fatalf("NewListener: %v", err)
		}
		lctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.Run(lctx); close(done) }()
		defer func() { stop(); <-done }()
		s.await(t, "listening", func(_ map[string]kv.Version, lost int) bool { return lost > 0 })

		key := "tls-" + time.Now().Format("150405.000000000")
		op := put(key, "over TLS", ver(time.Now().UnixMicro(), 1))
		mustApply(t, store, op)
		got, err := store.Get(ctx, key)
		if err != nil || got.Value != "over TLS" || got.Version != op.Version {
			t.Fatalf("Get(%q) over TLS = %+v, %v; want the value written", key, got, err)
		}
		s.await(t, "told of the write", func(m map[string]kv.Version, _ int) bool { return m[key] == op.Version })

		// Every session of ours is encrypted: the pool's and the listener's.
		var sessions, plain int
		if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE NOT s.ssl)
			FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
			WHERE a.datname = current_database() AND a.application_name IN ('', 'kvstack-listener') AND a.backend_type = 'client backend'`).Scan(&sessions, &plain); err != nil {
			t.Fatal(err)
		}
		var listener bool
		if err := pool.QueryRow(ctx, `SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
			WHERE a.application_name = 'kvstack-listener'`).Scan(&listener); err != nil {
			t.Fatalf("the listener's session: %v", err)
		}
		if sessions < 2 || plain != 0 || !listener {
			t.Errorf("%d sessions of the pool and the listener, %d in plain text, listener's encrypted %v; want ≥ 2, none, true", sessions, plain, listener)
		}
	})
}
