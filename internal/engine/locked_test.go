package engine_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/supervisor"
)

// Private engines locked as the native stack runs its own
// (KV_ENGINES=private): each serves TLS alone, with a certificate for
// 127.0.0.1 from a CA of the test's own, and asks for a password. Each
// refuses a plain-text client and a client without the password, and
// accepts the verified TLS one with it; a client that does not trust the
// CA is refused too. PostgreSQL takes a new superuser password when it
// starts again.
func TestLockedEngines(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Redis and RabbitMQ; not run with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ports, err := engine.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvengine-locked-")
	if err != nil {
		t.Fatal(err)
	}
	// A key per engine: each is chowned to its engine's user.
	certs := map[string]*engine.TLS{}
	for _, name := range []string{"pg", "redis", "rabbitmq"} {
		if certs[name], err = engine.MakeTLS(filepath.Join(dir, "tls-"+name), "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	pg := &engine.Postgres{Port: ports[0], Dir: filepath.Join(dir, "pg"), TLS: certs["pg"], TLSOnly: true, Password: "super-1"}
	rd := &engine.Redis{Port: ports[1], Dir: filepath.Join(dir, "redis"), TLS: certs["redis"], TLSOnly: true, Password: "default-pw",
		Users: []engine.RedisUser{{Name: "app", Password: "app-pw", Rules: []string{"~kv:*", "-@all", "+set", "+get", "+hello", "+ping"}}}}
	mq := &engine.RabbitMQ{Node: "kvenginelocked-" + filepath.Base(dir) + "@localhost", Port: ports[2], DistPort: ports[3],
		MetricsPort: mustPort(t), Dir: filepath.Join(dir, "rabbitmq"), TLS: certs["rabbitmq"], TLSOnly: true}
	p, err := engine.Start(ctx, dir, testLog{t}, pg, rd, mq)
	if err != nil {
		t.Fatalf("starting locked private PostgreSQL, Redis and RabbitMQ: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	t.Run("postgres", func(t *testing.T) {
		if err := pg.CreateRoles(ctx, engine.Role{Name: "app", Password: "app-pw"}); err != nil {
			t.Fatal(err)
		}
		host := "127.0.0.1:" + strconv.Itoa(pg.Port)
		verified := "sslmode=verify-full&sslrootcert=" + certs["pg"].CA
		for _, c := range []struct {
			name, url, refusal string // refusal empty: accepted
		}{
			{"plain text", "postgres://app:app-pw@" + host + "/postgres?sslmode=disable", "no encryption"},
			{"TLS, no password", "postgres://app@" + host + "/postgres?" + verified, "password"},
			{"TLS, wrong password", "postgres://app:nope@" + host + "/postgres?" + verified, "password authentication failed"},
			{"TLS, the system's CAs", "postgres://app:app-pw@" + host + "/postgres?sslmode=verify-full", "certificate"},
			{"verified TLS, the password", "postgres://app:app-pw@" + host + "/postgres?" + verified, ""},
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
			checkRefusal(t, c.name, err, c.refusal)
		}
		// A new superuser password, given while the server is down.
		if err := p.Stop(ctx, "postgres"); err != nil {
			t.Fatal(err)
		}
		pg.Password = "super-2"
		if err := pg.Init(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx, "postgres"); err != nil {
			t.Fatal(err)
		}
		if _, err := pg.IsPrimary(ctx); err != nil {
			t.Errorf("the superuser with its new password: %v", err)
		}
		conn, err := pgx.Connect(ctx, pg.URL("postgres", "super-1", "postgres"))
		if err == nil {
			conn.Close(ctx)
		}
		checkRefusal(t, "the superuser's old password", err, "password authentication failed")
	})

	t.Run("redis", func(t *testing.T) {
		verified, err := certs["redis"].ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name    string
			probe   supervisor.RedisProbe
			refusal string
		}{
			{"plain text", supervisor.RedisProbe{Addr: rd.Addr(), Password: "default-pw"}, "EOF|connection reset"},
			{"TLS, no password", supervisor.RedisProbe{Addr: rd.Addr(), TLS: verified}, "NOAUTH"},
			{"TLS, wrong password", supervisor.RedisProbe{Addr: rd.Addr(), TLS: verified, Password: "nope"}, "WRONGPASS"},
			{"TLS, the system's CAs", supervisor.RedisProbe{Addr: rd.Addr(), TLS: &tls.Config{}, Password: "default-pw"}, "certificate"},
			{"verified TLS, the password", supervisor.RedisProbe{Addr: rd.Addr(), TLS: verified, Password: "default-pw"}, ""},
		} {
			checkRefusal(t, c.name, c.probe.Check(ctx), c.refusal)
		}
		rdb := goredis.NewClient(&goredis.Options{Addr: rd.Addr(), Username: "app", Password: "app-pw", TLSConfig: verified, MaxRetries: -1})
		defer rdb.Close()
		if err := rdb.Set(ctx, "kv:k", "v", 0).Err(); err != nil {
			t.Errorf("the app's user over verified TLS: %v", err)
		}
		checkRefusal(t, "the app's user outside its keys", rdb.Set(ctx, "other", "v", 0).Err(), "NOPERM")
	})

	t.Run("rabbitmq", func(t *testing.T) {
		if err := mq.AddUsers(ctx, []string{"guest"}, engine.User{Name: "app", Password: "app-pw", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
			t.Fatal(err)
		}
		// Again: an existing user gets its new password; guest is gone already.
		if err := mq.AddUsers(ctx, []string{"guest"}, engine.User{Name: "app", Password: "app-pw2", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
			t.Fatal(err)
		}
		verified, err := certs["rabbitmq"].ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		host := "127.0.0.1:" + strconv.Itoa(mq.Port)
		for _, c := range []struct {
			name, url string
			cfg       *tls.Config
			refusal   string
		}{
			{"plain text", "amqp://app:app-pw2@" + host + "/", nil, "EOF|connection reset|frame"},
			{"TLS, guest", "amqps://guest:guest@" + host + "/", verified, "username or password not allowed"},
			{"TLS, the old password", "amqps://app:app-pw@" + host + "/", verified, "username or password not allowed"},
			{"TLS, the system's CAs", "amqps://app:app-pw2@" + host + "/", &tls.Config{}, "certificate"},
			{"verified TLS, the password", "amqps://app:app-pw2@" + host + "/", verified, ""},
		} {
			var conn *amqp.Connection
			var err error
			if c.cfg == nil {
				conn, err = amqp.Dial(c.url)
			} else {
				conn, err = amqp.DialTLS(c.url, c.cfg)
			}
			if err == nil {
				conn.Close()
			}
			checkRefusal(t, c.name, err, c.refusal)
		}
	})
}

// checkRefusal wants err to name refusal (one of its |-separated
// alternatives), or nil when refusal is empty.
func checkRefusal(t *testing.T, what string, err error, refusal string) {
	t.Helper()
	switch {
	case refusal == "" && err != nil:
		t.Errorf("%s: refused, want accepted: %v", what, err)
	case refusal != "" && err == nil:
		t.Errorf("%s: accepted, want refused (%s)", what, refusal)
	case refusal != "" && !slices.ContainsFunc(strings.Split(refusal, "|"), func(r string) bool { return strings.Contains(err.Error(), r) }):
		t.Errorf("%s: refused with %v, want %q", what, err, refusal)
	default:
		t.Logf("%s: %v", what, orAccepted(err))
	}
}

func orAccepted(err error) any {
	if err == nil {
		return "accepted"
	}
	return err
}

func mustPort(t *testing.T) int {
	t.Helper()
	p, err := engine.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return p[0]
}
