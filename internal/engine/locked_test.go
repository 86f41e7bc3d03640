package engine_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	oexec "os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/supervisor"
)

// Private engines locked as the native stack runs its own
// (KV_ENGINES=private): each serves TLS alone, with a certificate for
// 127.0.0.1 and localhost from a CA of the test's own, and asks for a
// password. Each refuses a plain-text client and a client without the
// password, and accepts the verified TLS one with it; a client that does
// not trust the CA is refused too. PostgreSQL takes a new superuser
// password when it starts again. RabbitMQ's Erlang distribution (its
// CLI's) is TLS alone too.
func TestLockedEngines(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Redis and RabbitMQ; not run with -short (make test runs it)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(5*time.Minute))
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
		// localhost: the name RabbitMQ's Erlang distribution verifies,
		// as the stack's certificates have it (native.EngineHosts).
		if certs[name], err = engine.MakeTLS(filepath.Join(dir, "tls-"+name), "127.0.0.1", "localhost"); err != nil {
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
		checkPostgresLocked(t, ctx, "127.0.0.1:"+strconv.Itoa(pg.Port), certs["pg"].CA, "app", "app-pw")
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
		enginetest.CheckRefusal(t, "the superuser's old password", err, "password authentication failed")
	})

	t.Run("redis", func(t *testing.T) {
		verified := checkRedisLocked(t, ctx, rd.Addr(), certs["redis"], "default-pw")
		rdb := goredis.NewClient(&goredis.Options{Addr: rd.Addr(), Username: "app", Password: "app-pw", TLSConfig: verified, MaxRetries: -1})
		defer rdb.Close()
		if err := rdb.Set(ctx, "kv:k", "v", 0).Err(); err != nil {
			t.Errorf("the app's user over verified TLS: %v", err)
		}
		enginetest.CheckRefusal(t, "the app's user outside its keys", rdb.Set(ctx, "other", "v", 0).Err(), "NOPERM")
	})

	t.Run("rabbitmq", func(t *testing.T) {
		if err := mq.AddUsers(ctx, []string{"guest"}, engine.User{Name: "app", Password: "app-pw", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
			t.Fatal(err)
		}
		// Again: an existing user gets its new password; guest is gone already.
		if err := mq.AddUsers(ctx, []string{"guest"}, engine.User{Name: "app", Password: "app-pw2", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
			t.Fatal(err)
		}
		checkRabbitMQLocked(t, "127.0.0.1:"+strconv.Itoa(mq.Port), certs["rabbitmq"], "app", "app-pw2", "app-pw")
		// A single node serving TLS alone has no peer, but its CLI
		// (rabbitmqctl, above) is a distribution peer: the cookie alone
		// does not let a plain-TCP Erlang node in.
		checkErlangDistLocked(t, ctx, mq)
	})
}

// checkPostgresLocked: the server at host refuses plain text, no password,
// a wrong password and a client that does not trust ca; it accepts user
// with password over TLS verified against ca (verify-full), and the
// session is encrypted.
func checkPostgresLocked(t *testing.T, ctx context.Context, host, ca, user, password string) {
	t.Helper()
	verified := "sslmode=verify-full&sslrootcert=" + ca
	for _, c := range []struct {
		name, url, refusal string // refusal empty: accepted
	}{
		{"plain text", "postgres://" + user + ":" + password + "@" + host + "/postgres?sslmode=disable", "no encryption"},
		{"TLS, no password", "postgres://" + user + "@" + host + "/postgres?" + verified, "password"},
		{"TLS, wrong password", "postgres://" + user + ":nope@" + host + "/postgres?" + verified, "password authentication failed"},
		{"TLS, the system's CAs", "postgres://" + user + ":" + password + "@" + host + "/postgres?sslmode=verify-full", "certificate"},
		{"verified TLS, the password", "postgres://" + user + ":" + password + "@" + host + "/postgres?" + verified, ""},
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
		enginetest.CheckRefusal(t, host+": "+c.name, err, c.refusal)
	}
}

// checkRedisLocked: the server at addr, serving TLS alone, refuses plain
// text, no password, a wrong password and a client that does not trust
// its CA; it accepts the default user with password over verified TLS. It
// returns the verified client configuration.
func checkRedisLocked(t *testing.T, ctx context.Context, addr string, certs *engine.TLS, password string) *tls.Config {
	t.Helper()
	verified, err := certs.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		probe   supervisor.RedisProbe
		refusal string
	}{
		{"plain text", supervisor.RedisProbe{Addr: addr, Password: password}, "EOF|connection reset"},
		{"TLS, no password", supervisor.RedisProbe{Addr: addr, TLS: verified}, "NOAUTH"},
		{"TLS, wrong password", supervisor.RedisProbe{Addr: addr, TLS: verified, Password: "nope"}, "WRONGPASS"},
		{"TLS, the system's CAs", supervisor.RedisProbe{Addr: addr, TLS: &tls.Config{}, Password: password}, "certificate"},
		{"verified TLS, the password", supervisor.RedisProbe{Addr: addr, TLS: verified, Password: password}, ""},
	} {
		enginetest.CheckRefusal(t, addr+": "+c.name, c.probe.Check(ctx), c.refusal)
	}
	return verified
}

// checkRabbitMQLocked: the node at host, serving AMQPS alone, refuses
// plain text, guest, user with oldPassword and a client that does not
// trust its CA; it accepts user with password over verified TLS.
func checkRabbitMQLocked(t *testing.T, host string, certs *engine.TLS, user, password, oldPassword string) {
	t.Helper()
	verified, err := certs.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, url string
		cfg       *tls.Config
		refusal   string
	}{
		{"plain text", "amqp://" + user + ":" + password + "@" + host + "/", nil, "EOF|connection reset|frame"},
		{"TLS, guest", "amqps://guest:guest@" + host + "/", verified, "username or password not allowed"},
		{"TLS, a wrong password", "amqps://" + user + ":" + oldPassword + "@" + host + "/", verified, "username or password not allowed"},
		{"TLS, the system's CAs", "amqps://" + user + ":" + password + "@" + host + "/", &tls.Config{}, "certificate"},
		{"verified TLS, the password", "amqps://" + user + ":" + password + "@" + host + "/", verified, ""},
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
		enginetest.CheckRefusal(t, host+": "+c.name, err, c.refusal)
	}
}

func mustPort(t *testing.T) int {
	t.Helper()
	p, err := engine.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return p[0]
}

// The HA topology's clusters locked as engines.ForHA locks them: a
// Patroni pair, a Redis Cluster and a RabbitMQ cluster, every node serving
// TLS alone with a certificate from a CA of the test's own, every user
// with a password. Each node refuses plain text, no password, a wrong
// password and an unverified certificate, as a single locked engine does
// (TestLockedEngines). Locked, each still works as a cluster: the standby
// streams synchronously over TLS as the replication user, the Redis
// replicas sync over TLS as the replication user, also once a killed
// master comes back as its replica, and the RabbitMQ nodes form one
// cluster, guest deleted on every node.
func TestLockedClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, two Patroni nodes, six redis-server and two RabbitMQ nodes; not run with -short (make test runs it)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(8*time.Minute))
	defer cancel()
	ports, err := engine.FreePorts(2 + 4 + 12 + 2*engine.PortsPerNode)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvengine-lockedha-")
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]*engine.TLS{}
	for _, name := range []string{"pg", "redis", "rabbitmq"} {
		// Patroni reaches its own node as localhost.
		if certs[name], err = engine.MakeTLS(filepath.Join(dir, "tls-"+name), "127.0.0.1", "localhost"); err != nil {
			t.Fatal(err)
		}
	}
	// etcd's certificate is PostgreSQL's (one CA for both: etcd checks
	// Patroni's client certificate against its own CA), its key a copy
	// of its own for etcd's user.
	etcdTLS := copyTLS(t, certs["pg"], filepath.Join(dir, "tls-etcd"))
	pc := engine.NewPatroni("kvlocked", &engine.Etcd{Port: ports[0], PeerPort: ports[1], Dir: filepath.Join(dir, "etcd"), TLS: etcdTLS},
		&engine.PatroniNode{Name: "pg1", Port: ports[2], RestPort: ports[3], Dir: filepath.Join(dir, "pg1")},
		&engine.PatroniNode{Name: "pg2", Port: ports[4], RestPort: ports[5], Dir: filepath.Join(dir, "pg2")})
	pc.TLS, pc.Password, pc.ReplicationPassword, pc.RewindPassword = certs["pg"], "super-pw", "repl-pw", "rewind-pw"
	pc.RestPassword = "rest-pw"
	pc.Bootstrap = engine.RoleSQL(engine.Role{Name: "app", Password: "app-pw"})
	rc := &engine.RedisCluster{Ports: ports[6:12], BusPorts: ports[12:18], Dir: filepath.Join(dir, "redis"),
		TLS: certs["redis"], TLSOnly: true, Password: "default-pw",
		Replication: engine.RedisUser{Name: "replication", Password: "repl-pw"},
		Users:       []engine.RedisUser{{Name: "app", Password: "app-pw", Rules: []string{"~kv:*", "-@all", "+set", "+get", "+hello", "+ping", "+cluster|slots", "+cluster|shards", "+command"}}}}
	mq := engine.NewRabbitMQCluster("rabbitmq", "kvlocked-"+filepath.Base(dir)+"-", filepath.Join(dir, "mq"), ports[18:])
	for _, n := range mq.Nodes {
		n.TLS, n.TLSOnly = certs["rabbitmq"], true
	}
	p, err := engine.Start(ctx, dir, testLog{t}, append(append(pc.Engines(), rc.Engines()...), mq.Engines()...)...)
	if err != nil {
		t.Fatalf("starting the locked clusters: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	t.Run("patroni", func(t *testing.T) {
		if err := pc.WaitPrimary(ctx, "app", "app-pw", "postgres", 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := waitFor(ctx, 3*time.Minute, pc.Synchronous); err != nil {
			t.Fatalf("the standby, copied and streaming as the replication user over TLS: %v", err)
		}
		for _, n := range pc.Nodes {
			checkPostgresLocked(t, ctx, n.Addr(), certs["pg"].CA, "app", "app-pw")
		}
		// Patroni's own users: with their passwords only, over TLS only.
		checkPostgresLocked(t, ctx, pc.Nodes[0].Addr(), certs["pg"].CA, "postgres", "super-pw")
		conn, err := pgx.Connect(ctx, pc.DatabaseURL("postgres", "super-pw", "postgres"))
		if err != nil {
			t.Fatalf("the primary through the multi-host URL: %v", err)
		}
		defer conn.Close(ctx)
		var streams, encrypted int
		if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_replication r
			JOIN pg_stat_ssl s USING (pid) WHERE r.usename = 'replicator' AND r.sync_state = 'sync'`).Scan(&streams, &encrypted); err != nil {
			t.Fatal(err)
		}
		if streams != 1 || encrypted != 1 {
			t.Errorf("synchronous streams as replicator: %d, over TLS: %d; want 1 and 1", streams, encrypted)
		}
		var trusted int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'`).Scan(&trusted); err != nil || trusted != 0 {
			t.Errorf("pg_hba.conf's trust lines: %d (%v), want none", trusted, err)
		}
		// Patroni's REST API: what changes the cluster wants the password.
		for _, n := range pc.Nodes {
			checkPatroniRESTLocked(t, ctx, pc, n, engine.RestUser, "rest-pw", "super-pw", "repl-pw", "rewind-pw", "rest-pw", "app-pw")
		}
		if err := pc.Synchronous(ctx); err != nil {
			t.Errorf("after the refused requests: %v", err)
		}
		checkEtcdLocked(t, ctx, pc.Etcd)
	})

	t.Run("redis", func(t *testing.T) {
		if err := rc.Form(ctx); err != nil {
			t.Fatalf("Form over TLS with the default user's password: %v", err)
		}
		for _, n := range rc.Nodes() {
			checkRedisLocked(t, ctx, n.Addr(), certs["redis"], "default-pw")
		}
		verified, err := certs["redis"].ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		repl := goredis.NewClient(&goredis.Options{Addr: rc.Addrs()[0], Username: "replication", Password: "repl-pw", TLSConfig: verified, MaxRetries: -1})
		defer repl.Close()
		enginetest.CheckRefusal(t, "the replication user reading a key", repl.Get(ctx, "kv:k").Err(), "NOPERM")
		app := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: rc.Addrs(), Username: "app", Password: "app-pw", TLSConfig: verified, MaxRetries: -1})
		defer app.Close()
		if err := app.Set(ctx, "kv:k", "v", 0).Err(); err != nil {
			t.Fatalf("the app's user over verified TLS on the cluster: %v", err)
		}
		// A master killed: its replica takes over, and it comes back as
		// the new master's replica, syncing as the replication user.
		master, err := rc.MasterOf(ctx, "kv:k")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Kill(ctx, master.Name); err != nil {
			t.Fatal(err)
		}
		waitNewMaster(t, ctx, rc, "kv:k", master)
		if err := rc.WaitHealthy(ctx); err != nil {
			t.Fatalf("after the kill: %v", err)
		}
		if got, err := app.Get(ctx, "kv:k").Result(); err != nil || got != "v" {
			t.Errorf("GET kv:k after the failover = %q, %v; want v", got, err)
		}
	})

	t.Run("rabbitmq", func(t *testing.T) {
		if err := mq.Form(ctx); err != nil {
			t.Fatal(err)
		}
		if err := mq.Nodes[0].AddUsers(ctx, []string{"guest"}, engine.User{Name: "app", Password: "app-pw", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
			t.Fatal(err)
		}
		for _, n := range mq.Nodes { // one node's users are every node's
			checkRabbitMQLocked(t, "127.0.0.1:"+strconv.Itoa(n.Port), certs["rabbitmq"], "app", "app-pw", "nope")
		}
		// The nodes' Erlang distribution is TLS (they formed the cluster,
		// and rabbitmqctl reached each, over it): a plain-TCP Erlang node
		// with the right cookie is not let in.
		for _, n := range mq.Nodes {
			checkErlangDistLocked(t, ctx, n)
		}
	})
}

// checkErlangDistLocked: an Erlang node holding user rabbitmq's cookie
// pings n over the distribution's TLS, with n's certificate, and gets
// pong, so the probe itself reaches n; the same node over plain TCP gets
// pang (pong when the distribution is plain).
func checkErlangDistLocked(t *testing.T, ctx context.Context, n *engine.RabbitMQ) {
	t.Helper()
	acct, err := user.Lookup("rabbitmq")
	if err != nil {
		t.Fatal(err)
	}
	tlsArgs := n.DistErlArgs()
	if tlsArgs == nil {
		t.Fatalf("%s: its distribution is plain (DistErlArgs nil)", n.Node)
	}
	ping := func(args []string) string {
		cmd := oexec.CommandContext(ctx, "erl", append(append([]string{"-sname", "kvprobe" + strconv.Itoa(os.Getpid()) + "@localhost", "-noinput"}, args...),
			"-eval", "io:format(\"~p~n\", [net_adm:ping('"+n.Node+"')]), halt().")...)
		cmd.Env = append(os.Environ(), "HOME="+acct.HomeDir, "ERL_EPMD_ADDRESS=127.0.0.1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("erl %v pinging %s: %v\n%s", args, n.Node, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := ping(tlsArgs); !strings.HasSuffix(got, "pong") {
		t.Errorf("%s: an Erlang node with the cookie, over the distribution's TLS: %s, want pong (else the plain probe's pang proves nothing)", n.Node, got)
	}
	if got := ping(nil); !strings.HasSuffix(got, "pang") {
		t.Errorf("%s: a plain-TCP Erlang node with the cookie: %s, want pang (the distribution TLS alone)", n.Node, got)
	}
}

// waitFor polls check every 200 ms until it passes or timeout ends; it
// returns check's last error.
func waitFor(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check(ctx)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkPatroniRESTLocked: node's Patroni REST API serves TLS alone with
// the cluster's certificate (plain HTTP refused, an unverified
// certificate refused); its unsafe endpoints (a switchover, a failover, a
// restart, a reinitialisation, a reload, a change of the DCS
// configuration) refuse a client without a certificate of the cluster's
// CA (403), and one with it but without the basic auth of user and
// password, or with a wrong password (401); with both, a reload is taken
// (202), and patronictl, reading the node's patroni.yml, reloads the
// cluster over TLS. Its GETs (health checks, monitoring) answer any
// client that verifies its certificate, and none tells one of secrets.
func checkPatroniRESTLocked(t *testing.T, ctx context.Context, pc *engine.Patroni, node *engine.PatroniNode, user, password string, secrets ...string) {
	t.Helper()
	addr := node.RestAddr()
	verified, err := pc.RestClientConfig()
	if err != nil || verified == nil {
		t.Fatalf("the REST API's client TLS: %v, %v", verified, err)
	}
	withCert := verified.Clone()
	cert, err := tls.LoadX509KeyPair(pc.TLS.Cert, pc.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	withCert.Certificates = []tls.Certificate{cert}
	do := func(cfg *tls.Config, method, path, body, user, password string) (int, error) {
		code, _, err := enginetest.PatroniREST(ctx, cfg, addr, method, path, body, user, password)
		return code, err
	}
	// Plain HTTP, and TLS trusting another CA: refused before any request.
	code, err := do(nil, "GET", "/health", "", "", "")
	enginetest.CheckRefusal(t, addr+" GET /health over plain HTTP", statusErr(code, err), "EOF|malformed|connection reset|400")
	other, err := engine.MakeTLS(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	otherCfg, err := other.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	code, err = do(otherCfg, "GET", "/health", "", "", "")
	enginetest.CheckRefusal(t, addr+" GET /health trusting another CA", statusErr(code, err), "certificate signed by unknown authority")
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/switchover", `{"leader":"pg1"}`},
		{"POST", "/failover", `{"candidate":"pg2"}`},
		{"POST", "/restart", `{}`},
		{"POST", "/reinitialize", `{}`},
		{"POST", "/reload", ``},
		{"PATCH", "/config", `{"ttl":30}`},
		{"PUT", "/config", `{}`},
		{"DELETE", "/switchover", ``},
	} {
		for _, who := range []struct {
			name, user, password string
			cfg                  *tls.Config
			want                 int
		}{
			{"no client certificate, the password", user, password, verified, http.StatusForbidden},
			{"a client certificate, no password", "", "", withCert, http.StatusUnauthorized},
			{"a client certificate, a wrong password", user, "nope", withCert, http.StatusUnauthorized},
		} {
			code, err := do(who.cfg, c.method, c.path, c.body, who.user, who.password)
			if err != nil || code != who.want {
				t.Errorf("%s %s %s with %s: %d (%v), want %d", addr, c.method, c.path, who.name, code, err, who.want)
			}
		}
	}
	if code, err := do(withCert, "POST", "/reload", "", user, password); err != nil || code != http.StatusAccepted {
		t.Errorf("%s POST /reload with a client certificate and the password: %d (%v), want 202", addr, code, err)
	}
	// The GETs answer a client that verifies the certificate, with neither
	// a certificate nor the password (Prometheus, the stack's checks: on
	// loopback, docs/SECURITY.md), and what they tell is the members and
	// their state, never a password of the cluster.
	for _, path := range []string{"/health", "/patroni", "/cluster", "/config", "/history", "/metrics"} {
		code, body, err := enginetest.PatroniREST(ctx, verified, addr, "GET", path, "", "", "")
		if err != nil || code != http.StatusOK {
			t.Errorf("%s GET %s over verified TLS, no certificate nor password: %d (%v), want 200", addr, path, code, err)
		}
		for _, secret := range secrets {
			if strings.Contains(body, secret) {
				t.Errorf("%s GET %s, open to any TLS client on loopback, tells a password of the cluster (%q)", addr, path, secret)
			}
		}
	}
	out, err := oexec.CommandContext(ctx, "patronictl", "-c", filepath.Join(node.Dir, "patroni.yml"), "reload", pc.Scope, node.Name, "--force").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Reload request received") {
		t.Errorf("patronictl reload %s %s: %v\n%s", pc.Scope, node.Name, err, out)
	}
}

// statusErr is err, or an error naming code when it is not 200.
func statusErr(code int, err error) error {
	if err == nil && code != http.StatusOK {
		return fmt.Errorf("HTTP %d", code)
	}
	return err
}

// checkEtcdLocked: etcd, serving TLS alone with client certificates on
// its client and its peer ports, refuses plain HTTP and a TLS client
// without a certificate on each, and answers one with a certificate of
// its CA.
func checkEtcdLocked(t *testing.T, ctx context.Context, e *engine.Etcd) {
	t.Helper()
	withCert, err := e.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := e.TLS.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	// The client listener (/health) and the peer listener (/version, which
	// answers a peer that has a certificate): TLS alone on both, a
	// certificate of the CA asked for.
	for _, l := range []struct{ name, addr, path string }{
		{"", e.Addr(), "/health"},
		{"peer, ", e.PeerAddr(), "/version"},
	} {
		for _, c := range []struct {
			name    string
			check   func(context.Context) error
			refusal string
		}{
			{"plain HTTP", supervisor.HTTPProbe{Addr: l.addr, Path: l.path}.Check, "EOF|malformed|connection reset|400"},
			{"TLS, no client certificate", func(ctx context.Context) error { return tlsAlert(ctx, l.addr, noCert) }, "remote error: tls: certificate required|remote error: tls: bad certificate"},
			{"TLS, a client certificate of its CA", supervisor.HTTPProbe{Addr: l.addr, Path: l.path, TLS: withCert}.Check, ""},
		} {
			enginetest.CheckRefusal(t, "etcd "+l.addr+": "+l.name+c.name, c.check(ctx), c.refusal)
		}
	}
}

// tlsAlert completes a TLS handshake with addr and reads what the server
// sends first, sending nothing: a server that wants a client certificate
// and got none answers with an alert, which the read returns. Through an
// HTTP client the same refusal raced the request's write: the server's
// close could reach the client first, which then reported "use of closed
// network connection" (CI, 7 December) instead of the alert.
func tlsAlert(ctx context.Context, addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(deadline)
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return err
	}
	return nil
}

// copyTLS copies the CA, certificate and key of src into dir: the same
// certificate with a key file of its own, for another engine's user.
func copyTLS(t *testing.T, src *engine.TLS, dir string) *engine.TLS {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := &engine.TLS{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem")}
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
	}{{src.CA, dst.CA, 0o644}, {src.Cert, dst.Cert, 0o644}, {src.Key, dst.Key, 0o600}} {
		b, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.to, b, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
