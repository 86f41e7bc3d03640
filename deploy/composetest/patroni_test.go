package composetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/compose"
)

// docker-compose.ha.yml's PostgreSQL, booted: its etcd members with the
// environment compose gives them, its nodes' Patroni with
// deploy/compose-ha/patroni.yml and each node's environment, the roles
// script Patroni runs once, and the TLS files `make compose-secrets` makes;
// on private ports of 127.0.0.1, under a supervisord of their own
// (internal/engine: the native HA topology's Patroni nodes, their REST
// API, kills and losses). Then each service's credentials are tried there,
// and the leader's node is lost.

// patroniCluster is the HA file's PostgreSQL, running.
type patroniCluster struct {
	private *engine.Private
	pc      *engine.Patroni
	ca      string            // the CA file the services verify against
	cert    tls.Certificate   // the nodes' certificate, a client's of the REST API
	hosts   *strings.Replacer // compose's host:port → the private one's
	log     *bytes.Buffer
	logDir  string // each program's output (kept after Close removes the rest)
}

// composeEtcd is an etcd member of the HA file: the program its
// entrypoint runs after engine-files.sh, as the user it drops to, with
// its environment, the addresses and /run/kvstack rewritten; the files
// engine-files.sh copies are in dir/run, its user's.
type composeEtcd struct {
	name, user, dir, client, log string
	command                      []string
	env                          map[string]string
	files                        map[string][]byte // what /run/kvstack holds
	tls                          *tls.Config       // its health check's: its certificate, the CA
}

func (e *composeEtcd) Init(context.Context) error {
	if err := mkdirOwned(filepath.Join(e.dir, "run"), e.user); err != nil {
		return err
	}
	if err := chownTo(e.dir, e.user); err != nil {
		return err
	}
	for name, b := range e.files {
		path := filepath.Join(e.dir, "run", name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return err
		}
		if err := chownTo(path, e.user); err != nil {
			return err
		}
	}
	return nil
}

func (e *composeEtcd) Program() supervisor.Program {
	return supervisor.Program{Name: e.name, Command: e.command, Env: e.env, Dir: e.dir, User: e.user, Priority: 1,
		Health: supervisor.HTTPProbe{Addr: e.client, Path: "/health", TLS: e.tls}, Addr: e.client, Log: e.log}
}

// composeNode is a PostgreSQL node of the HA file: an engine.PatroniNode
// whose patroni.yml is the HA file's, rendered for private ports, and
// whose Patroni has its service's environment.
type composeNode struct {
	*engine.PatroniNode
	conf  string
	env   map[string]string
	files map[string][]byte // what /run/kvstack and the mounts hold
}

func (n *composeNode) Init(context.Context) error {
	if err := mkdirOwned(n.Dir, "postgres"); err != nil {
		return err
	}
	// Patroni makes the data directory (data_dir, Dir/pgdata); the
	// PatroniNode finds its postmaster in Dir/data.
	if err := os.Symlink("pgdata", filepath.Join(n.Dir, "data")); err != nil && !os.IsExist(err) {
		return err
	}
	files := maps.Clone(n.files)
	files["patroni.yml"] = []byte(n.conf)
	for rel, b := range files {
		path := filepath.Join(n.Dir, rel)
		if err := mkdirOwned(filepath.Dir(path), "postgres"); err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if strings.HasSuffix(rel, ".sh") {
			mode = 0o700
		}
		if err := os.WriteFile(path, b, mode); err != nil {
			return err
		}
		if err := chownTo(path, "postgres"); err != nil {
			return err
		}
	}
	return nil
}

func (n *composeNode) Program() supervisor.Program {
	p := n.PatroniNode.Program()
	p.Env = n.env
	return p
}

func mkdirOwned(dir, owner string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return chownTo(dir, owner)
}

func chownTo(path, owner string) error {
	if os.Geteuid() != 0 || owner == "" {
		return nil
	}
	u, err := user.Lookup(owner)
	if err != nil {
		return fmt.Errorf("user %s (its Debian package): %w", owner, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// pgBinDir is the newest PostgreSQL installed here, in place of the
// image's (/usr/lib/postgresql/16/bin).
func pgBinDir(t *testing.T) string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(dirs) == 0 {
		t.Fatal("PostgreSQL is not installed (make setup)")
	}
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return va - vb
	})
	return filepath.Dir(dirs[len(dirs)-1])
}

// startHAPostgres boots the HA file of tr: the etcd members, then the
// PostgreSQL nodes in order, and waits for a leader with a synchronous
// standby (or returns why there is none).
func startHAPostgres(t *testing.T, tr tree) (*patroniCluster, []string) {
	t.Helper()
	p := tr.project(t)
	etcds, nodes := nodes(p, "etcd"), nodes(p, "postgres")
	if len(etcds) == 0 || len(nodes) < 2 {
		return nil, []string{fmt.Sprintf("%s: etcd members %v, PostgreSQL nodes %v", tr.composeFile(), etcds, nodes)}
	}
	ports, err := engine.FreePorts(2*len(etcds) + 2*len(nodes))
	if err != nil {
		t.Fatal(err)
	}
	port := func() string { s := strconv.Itoa(ports[0]); ports = ports[1:]; return s }
	var pairs []string
	listen := map[string][]string{} // service -> its own 0.0.0.0:P rewrites
	for _, e := range etcds {
		c, peer := port(), port()
		pairs = append(pairs, e+":2379", "127.0.0.1:"+c, e+":2380", "127.0.0.1:"+peer)
		listen[e] = []string{"0.0.0.0:2379", "127.0.0.1:" + c, "0.0.0.0:2380", "127.0.0.1:" + peer}
	}
	pgPorts := map[string]int{}
	restPorts := map[string]int{}
	for _, n := range nodes {
		pg, rest := port(), port()
		pgPorts[n], _ = strconv.Atoi(pg)
		restPorts[n], _ = strconv.Atoi(rest)
		// localhost: the name the test's certificate adds to compose's.
		pairs = append(pairs, n+":5432", "localhost:"+pg, n+":8008", "127.0.0.1:"+rest)
		listen[n] = []string{"0.0.0.0:5432", "127.0.0.1:" + pg, "0.0.0.0:8008", "127.0.0.1:" + rest}
	}
	hosts := strings.NewReplacer(pairs...)

	dir, err := os.MkdirTemp("", "composetest-patroni-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // when engine.Start never ran
	// Each node's TLS files as engine-files.sh copies them, the
	// certificate also naming localhost and 127.0.0.1 (the test dials
	// them).
	g := makeGenerated(t, tr.composeFile())
	certDir := t.TempDir()
	if _, err := compose.EngineCert(g.caDir, filepath.Join(certDir, "server.pem"), filepath.Join(certDir, "server-key.pem"),
		append(slices.Clone(compose.EngineHosts["postgres"]), "localhost", "127.0.0.1"), time.Now()); err != nil {
		t.Fatal(err)
	}
	cl := &patroniCluster{hosts: hosts, log: &bytes.Buffer{}, ca: filepath.Join(dir, "ca.pem"), logDir: t.TempDir()}
	caPEM, err := os.ReadFile(filepath.Join(g.caDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cl.ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if cl.cert, err = tls.LoadX509KeyPair(filepath.Join(certDir, "server.pem"), filepath.Join(certDir, "server-key.pem")); err != nil {
		t.Fatal(err)
	}

	// etcd's certificate, also naming 127.0.0.1 (where its peers and
	// Patroni dial it here).
	etcdCertDir := t.TempDir()
	if _, err := compose.EngineCert(g.caDir, filepath.Join(etcdCertDir, "server.pem"), filepath.Join(etcdCertDir, "server-key.pem"),
		append(slices.Clone(compose.EngineHosts["etcd"]), "localhost", "127.0.0.1"), time.Now()); err != nil {
		t.Fatal(err)
	}
	var problems []string
	var engines []engine.Engine
	for _, name := range etcds {
		s := service(t, p, name)
		edir := filepath.Join(dir, name)
		env := map[string]string{"PATH": os.Getenv("PATH")}
		own := strings.NewReplacer(append(slices.Clone(listen[name]), "/run/kvstack/", filepath.Join(edir, "run")+"/")...)
		for k, v := range s.Environment {
			if v != nil {
				env[k] = own.Replace(hosts.Replace(*v))
			}
		}
		env["ETCD_DATA_DIR"] = filepath.Join(edir, "data")
		client := hosts.Replace(name + ":2379")
		// engine-files.sh etcd gosu etcd COMMAND…: COMMAND as etcd, with
		// the files it copies.
		want := []string{"/bin/sh", repoInContainers + "/deploy/compose/engine-files.sh", "etcd", "gosu", "etcd"}
		if len(s.Entrypoint) <= len(want) || !slices.Equal(s.Entrypoint[:len(want)], want) {
			// Without it the cluster cannot form: say so now, rather than
			// wait out the boot for a quorum that cannot come.
			return nil, append(problems, fmt.Sprintf("%s: entrypoint %v does not start with %v", name, s.Entrypoint, want))
		}
		e := &composeEtcd{name: name, user: "etcd", dir: edir, client: client, command: s.Entrypoint[len(want):], env: env,
			log: filepath.Join(cl.logDir, name+".log"), files: map[string][]byte{}}
		for _, v := range s.Volumes {
			base, ok := strings.CutPrefix(v.Target, "/kvstack/engine-in/")
			if !ok || v.Type != types.VolumeTypeBind {
				continue
			}
			b, err := os.ReadFile(g.hostPath(t, v.Source))
			if err != nil {
				t.Fatal(err)
			}
			if base == "server.pem" || base == "server-key.pem" {
				b, _ = os.ReadFile(filepath.Join(etcdCertDir, base))
			}
			e.files[base] = b
		}
		if e.tls, err = (&engine.TLS{CA: cl.ca}).ClientConfig(); err == nil {
			var pair tls.Certificate
			pair, err = tls.LoadX509KeyPair(filepath.Join(etcdCertDir, "server.pem"), filepath.Join(etcdCertDir, "server-key.pem"))
			e.tls.Certificates = []tls.Certificate{pair}
		}
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, e)
	}
	var pnodes []*engine.PatroniNode
	var cnodes []*composeNode
	for _, name := range nodes {
		s := service(t, p, name)
		ndir := filepath.Join(dir, name)
		n := &composeNode{PatroniNode: &engine.PatroniNode{Name: name, Port: pgPorts[name], RestPort: restPorts[name], Dir: ndir,
			Log: filepath.Join(cl.logDir, name+".log")},
			// HOME: the postgres user's, as gosu sets it (libpq looks
			// there for client certificates).
			env: map[string]string{"PATH": os.Getenv("PATH"), "HOME": ndir}, files: map[string][]byte{}}
		// The programs Patroni runs find the mounted files in Dir, the
		// volume's data in Dir, /run/kvstack in Dir/run.
		paths := []string{"/run/kvstack/", filepath.Join(ndir, "run") + "/", "/var/lib/postgresql/data/", ndir + "/",
			"/usr/lib/postgresql/16/bin", pgBinDir(t)}
		conf := ""
		for _, v := range s.Volumes {
			rel, _ := filepath.Rel(root, v.Source)
			switch {
			case v.Type != types.VolumeTypeBind:
			case strings.HasPrefix(v.Target, "/kvstack/engine-in/"):
				b, err := os.ReadFile(g.hostPath(t, v.Source))
				if err != nil {
					t.Fatal(err)
				}
				base := strings.TrimPrefix(v.Target, "/kvstack/engine-in/")
				switch base {
				case "server.pem", "server-key.pem":
					b, _ = os.ReadFile(filepath.Join(certDir, base))
				}
				n.files[filepath.Join("run", base)] = b
			case strings.HasPrefix(v.Target, repoInContainers+"/"):
				b := tr.read(t, rel)
				n.files[filepath.Join("repo", rel)] = b
				paths = append(paths, v.Target, filepath.Join(ndir, "repo", rel))
				if strings.HasSuffix(v.Target, "/patroni.yml") {
					conf = string(b)
				}
			}
		}
		if want := []string{"gosu", "postgres", "patroni", repoInContainers + "/deploy/compose-ha/patroni.yml"}; len(s.Entrypoint) < 4 || !slices.Equal(s.Entrypoint[len(s.Entrypoint)-4:], want) {
			problems = append(problems, fmt.Sprintf("%s: entrypoint %v does not end in %v", name, s.Entrypoint, want))
		}
		if conf == "" {
			return nil, append(problems, name+" mounts no patroni.yml")
		}
		local := strings.NewReplacer(append(slices.Clone(listen[name]), paths...)...)
		n.conf = local.Replace(hosts.Replace(conf))
		for k, v := range s.Environment {
			if v != nil {
				n.env[k] = local.Replace(hosts.Replace(*v))
			}
		}
		pnodes = append(pnodes, n.PatroniNode)
		cnodes = append(cnodes, n)
	}
	// The cluster's REST checks (Members, Primary, Lose) are
	// engine.Patroni's, over TLS verified against the CA when patroni.yml
	// gives the REST API a certificate; its etcd is the HA file's members.
	cl.pc = engine.NewPatroni("kvstack", nil, pnodes...)
	if strings.Contains(cnodes[0].conf, "\n  certfile: ") {
		cl.pc.TLS = &engine.TLS{CA: cl.ca}
	}
	for _, n := range cnodes {
		engines = append(engines, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(4*time.Minute))
	defer cancel()
	cl.private, err = engine.Start(ctx, dir, cl.log, engines...)
	t.Cleanup(func() {
		if cl.private != nil {
			_ = cl.private.Close(context.Background())
		}
	})
	if err != nil {
		return nil, append(problems, fmt.Sprintf("the HA file's etcd and Patroni do not start: %v\n%s", err, cl.logs()))
	}
	// Patroni's /health answers once PostgreSQL runs; the standby's copy
	// and stream follow within seconds. Without synchronous_mode in the
	// dynamic configuration none ever comes: that is known as soon as the
	// leader has written it, rather than after the whole wait.
	sctx, scancel := context.WithTimeout(ctx, 90*time.Second)
	defer scancel()
	for {
		err := cl.pc.Synchronous(sctx)
		if err == nil {
			break
		}
		if on, cerr := cl.pc.SynchronousMode(sctx); cerr == nil && !on {
			return cl, append(problems, fmt.Sprintf("no leader with a synchronous standby: synchronous_mode is off in Patroni's dynamic configuration (GET /config), so no standby becomes synchronous (%v)\n%s", err, cl.logs()))
		}
		if sctx.Err() != nil {
			return cl, append(problems, fmt.Sprintf("no leader with a synchronous standby: %v\n%s", err, cl.logs()))
		}
		time.Sleep(300 * time.Millisecond)
	}
	return cl, problems
}

// logs are the last lines of each program's log.
func (cl *patroniCluster) logs() string {
	var b strings.Builder
	b.WriteString(cl.log.String())
	logs, _ := filepath.Glob(filepath.Join(cl.logDir, "*.log"))
	for _, l := range logs {
		text, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimSpace(string(text)), "\n")
		fmt.Fprintf(&b, "--- %s\n%s\n", l, strings.Join(lines[max(0, len(lines)-120):], "\n"))
	}
	return b.String()
}

// connect opens a session with a service's URL as compose gives it, its
// hosts the private nodes, with the TLS settings given.
func (cl *patroniCluster) connect(ctx context.Context, raw, mode, ca string) (*pgx.Conn, error) {
	cs, err := postgres.Config{URL: cl.hosts.Replace(raw), SSLMode: mode, SSLRootCert: ca}.ConnString()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return pgx.Connect(cctx, cs)
}

// checkHAPatroni boots the HA file's PostgreSQL and tries each service's
// credentials there: the roles postgres-roles.sh makes, TLS only, nobody
// else in database kvstack, the standby streaming over TLS.
func checkHAPatroni(t *testing.T, tr tree) []string {
	cl, problems := startHAPostgres(t, tr)
	if cl == nil || len(problems) > 0 {
		return problems
	}
	return append(append(problems, cl.checkRoles(t, tr)...), cl.checkREST(t, tr)...)
}

// checkREST: each node's Patroni REST API serves TLS alone (plain HTTP
// refused) with a certificate of the stack's CA; its unsafe endpoints (a
// switchover, a restart, a change of the DCS configuration) refuse a
// client without a certificate of that CA (403), and one without the
// password compose gives it (PATRONI_RESTAPI_USERNAME and _PASSWORD,
// 401); with both, a reload is taken.
func (cl *patroniCluster) checkREST(t *testing.T, tr tree) []string {
	var problems []string
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	verified, err := (&engine.TLS{CA: cl.ca}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	withCert := verified.Clone()
	withCert.Certificates = []tls.Certificate{cl.cert}
	for _, n := range cl.pc.Nodes {
		s := service(t, tr.project(t), n.Name)
		user, password := env(s, "PATRONI_RESTAPI_USERNAME"), env(s, "PATRONI_RESTAPI_PASSWORD")
		do := func(cfg *tls.Config, method, path, body, user, password string) (int, error) {
			code, _, err := enginetest.PatroniREST(ctx, cfg, n.RestAddr(), method, path, body, user, password)
			return code, err
		}
		if code, err := do(nil, "GET", "/health", "", "", ""); err == nil {
			problems = append(problems, fmt.Sprintf("%s's Patroni REST API: GET /health over plain HTTP answered %d, want refused (TLS alone)", n.Name, code))
		}
		for _, c := range [][3]string{{"POST", "/switchover", `{"leader":"postgres1"}`}, {"POST", "/restart", `{}`}, {"PATCH", "/config", `{"ttl":30}`}} {
			if code, err := do(verified, c[0], c[1], c[2], user, password); err != nil || code != http.StatusForbidden {
				problems = append(problems, fmt.Sprintf("%s's Patroni REST API: %s %s without a client certificate answered %d (%v), want 403", n.Name, c[0], c[1], code, err))
			}
			if code, err := do(withCert, c[0], c[1], c[2], "", ""); err != nil || code != http.StatusUnauthorized {
				problems = append(problems, fmt.Sprintf("%s's Patroni REST API: %s %s without a password answered %d (%v), want 401", n.Name, c[0], c[1], code, err))
			}
		}
		if code, err := do(withCert, "POST", "/reload", "", user, password); err != nil || code != http.StatusAccepted {
			problems = append(problems, fmt.Sprintf("%s's Patroni REST API: POST /reload with a client certificate and PATRONI_RESTAPI_PASSWORD answered %d (%v), want 202", n.Name, code, err))
		}
	}
	return problems
}

func (cl *patroniCluster) checkRoles(t *testing.T, tr tree) []string {
	p := tr.project(t)
	ctx := context.Background()
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	node := service(t, p, "postgres1")
	superURL := "postgres://postgres:" + url.QueryEscape(env(node, "PATRONI_SUPERUSER_PASSWORD")) + "@postgres1:5432,postgres2:5432/postgres?target_session_attrs=read-write"
	su, err := cl.connect(ctx, superURL, "verify-full", cl.ca)
	if err != nil {
		return append(problems, fmt.Sprintf("the superuser (PATRONI_SUPERUSER_PASSWORD) over TLS: %v", err))
	}
	defer su.Close(ctx)
	// Every connection to the leader, the standby's stream included, is
	// encrypted.
	var plainStreams int
	if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication r LEFT JOIN pg_stat_ssl s USING (pid) WHERE NOT coalesce(s.ssl, false)").Scan(&plainStreams); err != nil || plainStreams > 0 {
		bad("the standby streams from the leader in plain text (%d streams, %v)", plainStreams, err)
	}
	for _, role := range []string{compose.PostgresOwner, compose.PostgresApp, compose.PostgresMonitor} {
		var super, createdb, createrole, repl bool
		if err := su.QueryRow(ctx, "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication FROM pg_roles WHERE rolname = $1", role).Scan(&super, &createdb, &createrole, &repl); err != nil {
			bad("role %s: %v (did Patroni's post_bootstrap run postgres-roles.sh?)", role, err)
		} else if super || createdb || createrole || repl {
			bad("role %s: superuser %v, createdb %v, createrole %v, replication %v", role, super, createdb, createrole, repl)
		}
	}
	// Each kvstack service's URL, as compose gives it: over verified TLS,
	// on the node that takes writes, as its own role.
	for name, role := range map[string]string{"migrate": compose.PostgresOwner, "api1": compose.PostgresApp, "api2": compose.PostgresApp,
		"consumer": compose.PostgresApp, "consumer2": compose.PostgresApp} {
		s := service(t, p, name)
		c, err := cl.connect(ctx, env(s, "DATABASE_URL"), env(s, "PG_SSLMODE"), cl.ca)
		if err != nil {
			bad("%s cannot connect to PostgreSQL with its URL over TLS: %v", name, err)
			continue
		}
		var who string
		var standby bool
		if err := c.QueryRow(ctx, "SELECT current_user, pg_is_in_recovery()").Scan(&who, &standby); err != nil || who != role || standby {
			bad("%s: connected as %s (standby %v, %v), want %s on the leader", name, who, standby, err, role)
		}
		if role == compose.PostgresApp {
			if _, err := c.Exec(ctx, "CREATE TABLE intruder (x int)"); err == nil {
				bad("%s (%s) could CREATE TABLE", name, role)
			}
		}
		c.Close(ctx)
		// The same in plain text: refused.
		if c, err := cl.connect(ctx, env(s, "DATABASE_URL"), "disable", ""); err == nil {
			c.Close(ctx)
			bad("%s's role connects to PostgreSQL in plain text (sslmode=disable)", name)
		}
	}
	// Each exporter reads its node as kvstack_monitor.
	for _, e := range nodes(p, "postgres-exporter") {
		s := service(t, p, e)
		c, err := cl.connect(ctx, strings.Replace(env(s, "DATA_SOURCE_NAME"), "sslrootcert=/etc/kvstack/tls/ca.pem", "sslrootcert="+cl.ca, 1), "", "")
		if err != nil {
			bad("%s cannot connect to PostgreSQL: %v", e, err)
			continue
		}
		var who string
		if err := c.QueryRow(ctx, "SELECT current_user FROM pg_stat_activity LIMIT 1").Scan(&who); err != nil || who != compose.PostgresMonitor {
			bad("%s: connected as %q (%v), want %s", e, who, err, compose.PostgresMonitor)
		}
		c.Close(ctx)
	}
	// Any other role: no connection to kvstack, hence no NOTIFY on the
	// applied channel.
	if _, err := su.Exec(ctx, "CREATE ROLE kvstack_intruder LOGIN PASSWORD 'intruder-password'"); err != nil {
		t.Fatal(err)
	}
	intruder := "postgres://kvstack_intruder:intruder-password@postgres1:5432,postgres2:5432/kvstack?target_session_attrs=read-write"
	if c, err := cl.connect(ctx, intruder, "verify-full", cl.ca); err == nil {
		c.Close(ctx)
		bad("a role of no service (PUBLIC) could connect to database kvstack")
	}
	return problems
}

// The HA file's PostgreSQL boots, its roles and TLS hold, and losing the
// leader's node (Patroni and postgres killed, kept down) promotes the
// standby, which the services' URL then reaches.
func TestHAPatroni(t *testing.T) {
	t.Parallel()
	started := time.Now()
	cl, problems := startHAPostgres(t, haTree)
	for _, p := range problems {
		t.Error(p)
	}
	if cl == nil || len(problems) > 0 {
		t.FailNow()
	}
	t.Logf("etcd and Patroni up, synchronous, in %s", time.Since(started).Round(100*time.Millisecond))
	for _, p := range append(cl.checkRoles(t, haTree), cl.checkREST(t, haTree)...) {
		t.Error(p)
	}

	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(3*time.Minute))
	defer cancel()
	primary, err := cl.pc.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	api := service(t, haTree.project(t), "api1")
	if err := primary.Lose(ctx, cl.private.Stack().Supervisor()); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	for {
		c, err := cl.connect(ctx, env(api, "DATABASE_URL"), env(api, "PG_SSLMODE"), cl.ca)
		if err == nil {
			var port int
			err = c.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port)
			c.Close(ctx)
			if err == nil && port != primary.Port {
				t.Logf("%s lost: api1's URL reaches a read-write session on the promoted node %s later", primary.Name, time.Since(lost).Round(100*time.Millisecond))
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("%s lost: no read-write session through api1's URL: %v\n%s", primary.Name, err, cl.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Each check of the booted cluster fails on a copy of the repository that
// has the defect it is there to catch.
func TestHAPatroniCatches(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the HA file's etcd and Patroni once per case")
	}
	t.Parallel()
	tests := []struct{ name, file, old, new, want string }{
		{"a password over plain TCP", "deploy/compose-ha/patroni.yml",
			"    - hostssl all all all scram-sha-256\n", "    - host all all all scram-sha-256\n", "plain text (sslmode=disable)"},
		{"no roles made", "deploy/compose-ha/patroni.yml",
			"  post_bootstrap: /kvstack/deploy/compose/postgres-roles.sh\n", "", "did Patroni's post_bootstrap run"},
		{"CONNECT left to PUBLIC", "deploy/compose/postgres-roles.sh",
			"REVOKE ALL ON DATABASE kvstack FROM PUBLIC;\n", "", "a role of no service (PUBLIC)"},
		{"no synchronous standby", "deploy/compose-ha/patroni.yml",
			"    synchronous_mode: true\n", "", "no leader with a synchronous standby"},
		{"Patroni's REST API without a password", "docker-compose.ha.yml",
			"  PATRONI_RESTAPI_USERNAME: patroni\n  PATRONI_RESTAPI_PASSWORD: ${PATRONI_API_PASSWORD:?set PATRONI_API_PASSWORD (make compose-secrets)}\n", "", "without a password answered"},
		{"Patroni's REST API in plain HTTP", "deploy/compose-ha/patroni.yml",
			"  certfile: /run/kvstack/server.pem\n", "", "over plain HTTP answered"},
		{"Patroni's REST API without client certificates", "deploy/compose-ha/patroni.yml",
			"  verify_client: optional\n", "", "without a client certificate answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			catches(t, checkHAPatroni, haFile, tt.file, tt.old, tt.new, tt.want)
		})
	}
}
