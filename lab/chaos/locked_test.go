package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// The single-node campaign's engines are locked as make up's with
// KV_ENGINES=private (privateSettings, engines.ForStack): started as the
// campaign starts them (on free ports here), each refuses a plain-text
// client and one without the password, and accepts the stack's own URLs
// (verified TLS, the stack's users), as the campaign's processes and
// checks use them.
func TestCampaignEnginesLocked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Redis and RabbitMQ; not run with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	free, err := engine.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for i, k := range []string{"PGPORT", "REDIS_PORT", "RABBITMQ_PORT", "RABBITMQ_DIST_PORT", "RABBITMQ_METRICS_PORT"} {
		ports[k] = strconv.Itoa(free[i])
	}
	// Not t.TempDir: its parent is closed to the engines' users.
	dir, err := os.MkdirTemp("", "kvchaos-locked-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the engines' users pass through it
		t.Fatal(err)
	}
	s, err := privateSettings("../..", dir, ports)
	if err != nil {
		t.Fatal(err)
	}
	if !engines.Locked(s) {
		t.Fatalf("the campaign's engines are not locked (KV_ENGINES=%q)", s.Get("KV_ENGINES"))
	}
	for _, l := range native.Links(s) {
		if !l.TLS || !l.Own {
			t.Errorf("the campaign's processes reach %s", l)
		}
	}
	eng := engines.ForStack(s, filepath.Join(dir, "engines"))
	p, err := engine.Start(ctx, filepath.Join(dir, "engines"), testLog{t}, eng.All()...)
	if err != nil {
		t.Fatalf("starting the campaign's engines: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := engines.Provision(ctx, s, eng.Postgres); err != nil {
		t.Fatal(err)
	}
	if err := engines.ProvisionRabbitMQ(ctx, s, eng.RabbitMQ); err != nil {
		t.Fatal(err)
	}
	ca, err := native.ClientTLS(s.Get("KV_TLS_CA"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("postgresql", func(t *testing.T) {
		pgHost := "127.0.0.1:" + ports["PGPORT"]
		owner := s.PostgresRoles().Owner
		for _, c := range []struct {
			name, url, refusal string // refusal empty: accepted
		}{
			{"plain text", fmt.Sprintf("postgres://%s:%s@%s/kvstack?sslmode=disable", owner.User, owner.Password, pgHost), "no encryption"},
			{"TLS, no password", fmt.Sprintf("postgres://%s@%s/kvstack?sslmode=require", owner.User, pgHost), "password"},
			{"the superuser over TLS, no password", fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=require", pgHost), "password"},
			{"DATABASE_URL", s.Get("DATABASE_URL"), ""},
			{"KV_APP_DATABASE_URL", s.Get("KV_APP_DATABASE_URL"), ""},
		} {
			conn, err := pgx.Connect(ctx, c.url)
			if err == nil {
				var ssl bool
				err = conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
				conn.Close(ctx)
				if err == nil && !ssl {
					t.Errorf("%s: accepted without TLS", c.name)
				}
			}
			enginetest.CheckRefusal(t, c.name, err, c.refusal)
		}
	})

	t.Run("redis", func(t *testing.T) {
		addr := "127.0.0.1:" + ports["REDIS_PORT"]
		ping := func(o *goredis.Options) error {
			o.Addr, o.MaxRetries, o.DialTimeout = addr, -1, 3*time.Second
			c := goredis.NewClient(o)
			defer c.Close()
			return c.Ping(ctx).Err()
		}
		enginetest.CheckRefusal(t, "plain text", ping(&goredis.Options{Password: s.Secret("REDIS_DEFAULT")}), "EOF|connection reset")
		enginetest.CheckRefusal(t, "TLS, no password", ping(&goredis.Options{TLSConfig: ca.Clone()}), "NOAUTH")
		enginetest.CheckRefusal(t, "the app's user", ping(&goredis.Options{TLSConfig: ca.Clone(), Username: s.Get("REDIS_USERNAME"), Password: s.Get("REDIS_PASSWORD")}), "")
		rdb, err := engines.RedisClient(s) // the campaign's checks' client
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		enginetest.CheckRefusal(t, "the campaign's checks' client", rdb.Ping(ctx).Err(), "")
	})

	t.Run("rabbitmq", func(t *testing.T) {
		host := "127.0.0.1:" + ports["RABBITMQ_PORT"]
		admin, api, _ := s.RabbitMQCredentials()
		dial := func(url string, cfg *tls.Config) error {
			var conn *amqp.Connection
			var err error
			if cfg == nil {
				conn, err = amqp.Dial(url)
			} else {
				conn, err = amqp.DialTLS(url, cfg)
			}
			if err == nil {
				conn.Close()
			}
			return err
		}
		enginetest.CheckRefusal(t, "plain text", dial(fmt.Sprintf("amqp://%s:%s@%s/", admin.User, admin.Password, host), nil), "EOF|connection reset|refused|frame")
		enginetest.CheckRefusal(t, "TLS, guest", dial("amqps://guest:guest@"+host+"/", ca.Clone()), "username or password not allowed")
		enginetest.CheckRefusal(t, "TLS, the API's user without its password", dial(fmt.Sprintf("amqps://%s:x@%s/", api.User, host), ca.Clone()), "username or password not allowed")
		enginetest.CheckRefusal(t, "RABBITMQ_URL", dial(s.Get("RABBITMQ_URL"), ca.Clone()), "")
		enginetest.CheckRefusal(t, "KV_API_RABBITMQ_URL", dial(s.Get("KV_API_RABBITMQ_URL"), ca.Clone()), "")
	})
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Logf("%s", b)
	return len(b), nil
}
