package composetest

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/syncbuf"
	"github.com/kvstack/kvstack/internal/tlsconf"
	"github.com/kvstack/kvstack/lab/compose"
	"github.com/kvstack/kvstack/lab/native"
)

// Least privilege and TLS to the engines in docker-compose.yml
// (docs/SECURITY.md), proven without Docker: compose's own files (the
// PostgreSQL init script, Redis's config, the users `make compose-secrets`
// renders) run on real engines, private ones (internal/engine/enginetest),
// and each service's credentials, as compose hands them over, are tried
// there for what they may and may not do. TestEngineChecksCatchBrokenCopies
// shows each check failing on a weakened copy.

// The private engines the checks use, with TLS: certificates for
// enginetest.TLSHost signed by CAs of their own (the compose engines' own
// certificates are checked against the stack's CA in checkEngineCerts).
var (
	privatePG     = enginetest.Postgres{TLS: true}
	privateBroker = enginetest.RabbitMQ{TLS: true}
)

var engineChecks = map[string]check{
	"no service as an engine's superuser": checkServiceCredentials,
	"engine certificates":                 checkEngineCerts,
	"redis-server with compose's config":  checkRedisOnRealServer,
	"postgres and rabbitmq roles":         checkRolesOnRealEngines,
}

// The checks hold for docker-compose.yml; those that read the compose
// file alone hold for docker-compose.ha.yml too, whose engines are booted
// by patroni_test.go and rediscluster_test.go (its RabbitMQ nodes run
// rabbitmq.conf, which rabbitmqconf_test.go boots).
func TestEngineLeastPrivilegeAndTLS(t *testing.T) {
	for name, c := range engineChecks {
		t.Run(name, func(t *testing.T) {
			for _, problem := range c(t, tree{}) {
				t.Error(problem)
			}
		})
	}
	for _, name := range haEngineChecks {
		t.Run(haFile+"/"+name, func(t *testing.T) {
			for _, problem := range engineChecks[name](t, haTree) {
				t.Error(problem)
			}
		})
	}
}

// haEngineChecks are the engineChecks that hold for the HA file as they
// are.
var haEngineChecks = []string{"no service as an engine's superuser", "engine certificates"}

func TestEngineChecksCatchBrokenCopies(t *testing.T) {
	tests := []struct {
		name, check, file, old, new string
		want                        string
	}{
		{"the API as the owner", "no service as an engine's superuser", "docker-compose.yml",
			"DATABASE_URL: postgres://kvstack_app:${POSTGRES_APP_PASSWORD", "DATABASE_URL: postgres://kvstack:${POSTGRES_PASSWORD", "api1 connects to PostgreSQL as kvstack, want kvstack_app"},
		{"the exporter as the superuser", "no service as an engine's superuser", "docker-compose.yml",
			"postgres://kvstack_monitor:${POSTGRES_MONITOR_PASSWORD:?set POSTGRES_MONITOR_PASSWORD (make compose-secrets)}@",
			"postgres://postgres:${POSTGRES_SUPERUSER_PASSWORD:?set POSTGRES_SUPERUSER_PASSWORD (make compose-secrets)}@", "postgres-exporter connects to PostgreSQL as postgres"},
		{"the consumer as the API's user", "no service as an engine's superuser", "docker-compose.yml",
			"amqps://kvstack_consumer:${RABBITMQ_CONSUMER_PASSWORD", "amqps://kvstack_api:${RABBITMQ_API_PASSWORD", "consumer connects to RabbitMQ as kvstack_api"},
		{"redis's default user", "no service as an engine's superuser", "docker-compose.yml",
			"  REDIS_USERNAME: kvstack_app\n", "", "connects to Redis as the default user"},
		{"plain text to PostgreSQL", "no service as an engine's superuser", "docker-compose.yml",
			"  PG_SSLMODE: verify-full\n", "  PG_SSLMODE: require\n", "PG_SSLMODE"},
		{"plain text to Redis", "no service as an engine's superuser", "docker-compose.yml",
			"REDIS_ADDR: rediss://redis:6379", "REDIS_ADDR: redis://redis:6379", "not rediss://"},
		{"the exporter unverified", "no service as an engine's superuser", "docker-compose.yml",
			"?sslmode=verify-full&sslrootcert=/etc/kvstack/tls/ca.pem", "?sslmode=require", "sslmode"},
		{"rabbitmq's default administrator", "no service as an engine's superuser", "docker-compose.yml",
			"    command: [\"rabbitmq-server\"]\n    environment:\n", "    command: [\"rabbitmq-server\"]\n    environment:\n      RABBITMQ_DEFAULT_USER: kvstack\n      RABBITMQ_DEFAULT_PASS: ${RABBITMQ_PASSWORD}\n", "RABBITMQ_DEFAULT_USER"},
		{"a certificate for another name", "engine certificates", "docker-compose.yml",
			"REDIS_ADDR: rediss://redis:6379", "REDIS_ADDR: rediss://cache:6379", "cache"},
		{"redis without its users", "redis-server with compose's config", "deploy/compose/redis.conf",
			"aclfile /run/kvstack/redis-users.acl\n", "", "api1's Redis user cannot PING"},
		{"redis in plain text", "redis-server with compose's config", "deploy/compose/redis.conf",
			"port 0\n", "port 6380\n", "plain text"},
		{"the probe without a user", "redis-server with compose's config", "docker-compose.yml",
			`"--user", "kvstack_monitor", "ping"]`, `"ping"]`, "healthcheck"},
		{"the app role a superuser", "postgres and rabbitmq roles", "deploy/compose/postgres-roles.sh",
			"CREATE ROLE kvstack_app LOGIN NOSUPERUSER", "CREATE ROLE kvstack_app LOGIN SUPERUSER", "kvstack_app (api1) could CREATE TABLE"},
		{"password over plain TCP", "postgres and rabbitmq roles", "deploy/compose/postgres-roles.sh",
			"sed -i 's/^host all all all scram-sha-256$/hostssl all all all scram-sha-256/' \"$PGDATA/pg_hba.conf\"\ngrep -q '^hostssl all all all scram-sha-256$' \"$PGDATA/pg_hba.conf\"\n", "", "pg_hba.conf"},
		{"a role's password not the URL's", "postgres and rabbitmq roles", "docker-compose.yml",
			"POSTGRES_APP_PASSWORD: ${POSTGRES_APP_PASSWORD:?", "POSTGRES_APP_PASSWORD: x${POSTGRES_APP_PASSWORD:?", "not kvstack_app's password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			catches(t, engineChecks[tt.check], "docker-compose.yml", tt.file, tt.old, tt.new, tt.want)
		})
	}
}

// The same checks, on weakened copies of the HA file.
func TestHAEngineChecksCatch(t *testing.T) {
	tests := []struct{ name, check, old, new, want string }{
		{"the API as the owner", "no service as an engine's superuser",
			"DATABASE_URL: postgres://kvstack_app:${POSTGRES_APP_PASSWORD", "DATABASE_URL: postgres://kvstack:${POSTGRES_PASSWORD", "api1 connects to PostgreSQL as kvstack, want kvstack_app"},
		{"the consumer as the API's user", "no service as an engine's superuser",
			"amqps://kvstack_consumer:${RABBITMQ_CONSUMER_PASSWORD", "amqps://kvstack_api:${RABBITMQ_API_PASSWORD", "consumer connects to RabbitMQ as kvstack_api"},
		{"redis's default user", "no service as an engine's superuser",
			"  REDIS_USERNAME: kvstack_app\n", "", "connects to Redis as the default user"},
		{"plain AMQP", "no service as an engine's superuser",
			"RABBITMQ_URL: amqps://kvstack:", "RABBITMQ_URL: amqp://kvstack:", "want amqps://"},
		{"plain text to a Redis node", "no service as an engine's superuser",
			"REDIS_ADDR: rediss://redis1:6379,", "REDIS_ADDR: redis://redis1:6379,", "not rediss://"},
		{"rabbitmq's default administrator", "no service as an engine's superuser",
			"x-rabbitmq-env: &rabbitmq-env\n", "x-rabbitmq-env: &rabbitmq-env\n  RABBITMQ_DEFAULT_USER: kvstack\n", "RABBITMQ_DEFAULT_USER"},
		{"an exporter unverified", "no service as an engine's superuser",
			"@postgres2:5432/kvstack?sslmode=verify-full&sslrootcert=/etc/kvstack/tls/ca.pem", "@postgres2:5432/kvstack?sslmode=require", "sslmode"},
		{"an exporter as the app", "no service as an engine's superuser",
			"    REDIS_USER: kvstack_monitor\n", "    REDIS_USER: kvstack_app\n", "redis-exporter1 connects to Redis as kvstack_app"},
		{"a host no certificate names", "engine certificates",
			"REDIS_ADDR: rediss://redis1:6379,", "REDIS_ADDR: rediss://cache:6379,", "cache"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			catches(t, engineChecks[tt.check], haFile, haFile, tt.old, tt.new, tt.want)
		})
	}
}

// `make compose-secrets` fills every secret compose requires, and keeps
// what is set.
func TestComposeSecretsFillTheEnvFile(t *testing.T) {
	required := map[string]bool{}
	for _, f := range composeFiles {
		for k := range secretsOf(f) {
			required[k] = true
		}
	}
	for _, k := range compose.FileSecrets {
		required[k] = true
	}
	if got, want := slices.Sorted(slices.Values(compose.Secrets)), slices.Sorted(maps.Keys(required)); !slices.Equal(got, want) {
		t.Errorf("lab/compose fills %v; the compose files require %v", got, want)
	}
	envFile := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(envFile, []byte("# mine\nPOSTGRES_PASSWORD=mine-1\nKV_NGINX_PORT=8443\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env, filled, err := compose.FillEnv(envFile, filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	if env["POSTGRES_PASSWORD"] != "mine-1" || env["KV_NGINX_PORT"] != "8443" || slices.Contains(filled, "POSTGRES_PASSWORD") {
		t.Errorf("a value set was replaced: %v (filled %v)", env, filled)
	}
	for _, k := range compose.Secrets {
		if k != "POSTGRES_PASSWORD" && (len(env[k]) < 32 || !slices.Contains(filled, k)) {
			t.Errorf("%s = %q, want a random value, filled", k, env[k])
		}
	}
	again, refilled, err := compose.FillEnv(envFile, filepath.Join(root, ".env.example"))
	if err != nil || len(refilled) > 0 || !maps.Equal(env, again) {
		t.Errorf("a second run changed the file: filled %v, err %v", refilled, err)
	}
	if fi, err := os.Stat(envFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf(".env mode %v, want 0600 (%v)", fi.Mode().Perm(), err)
	}
}

// generatedFiles are what `make compose-secrets` makes, made in a
// temporary directory by lab/compose with a CA of its own (as make tls
// makes it) from the secrets the project is loaded with.
type generatedFiles struct {
	caDir, dir string
	env        map[string]string
}

func makeGenerated(t *testing.T, file string) generatedFiles {
	t.Helper()
	tmp := t.TempDir()
	// `make compose-secrets` fills every secret of either file.
	all := secretsOf("docker-compose.ha.yml")
	maps.Copy(all, fileSecrets)
	g := generatedFiles{caDir: filepath.Join(tmp, "tls"), dir: filepath.Join(tmp, "compose"), env: all}
	if _, err := native.MakeEdgeCerts(g.caDir, []string{"localhost"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := compose.Render(root, g.caDir, g.dir, g.env, time.Now()); err != nil {
		t.Fatal(err)
	}
	return g
}

// hostPath is where a mount's source, as compose names it, is in g.
func (g generatedFiles) hostPath(t *testing.T, source string) string {
	t.Helper()
	rel, _ := filepath.Rel(root, source)
	switch {
	case rel == generatedCA:
		return filepath.Join(g.caDir, native.CAFile)
	case strings.HasPrefix(rel, generatedCompose):
		return filepath.Join(g.dir, strings.TrimPrefix(rel, generatedCompose))
	}
	return source
}

// engineFiles does what deploy/compose/engine-files.sh does in the
// engine's container: the files mounted in /kvstack/engine-in, in a
// directory of the test's (for /run/kvstack).
func engineFiles(t *testing.T, g generatedFiles, s types.ServiceConfig) string {
	t.Helper()
	dir := t.TempDir()
	for _, v := range s.Volumes {
		name, ok := strings.CutPrefix(v.Target, "/kvstack/engine-in/")
		if !ok {
			continue
		}
		b, err := os.ReadFile(g.hostPath(t, v.Source))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// engineUsers are who each service may connect to each engine as: its own
// user, none an engine's superuser, administrator or default user.
var engineUsers = map[string]map[string]string{ // service -> engine -> user
	"migrate":           {"postgres": compose.PostgresOwner, "rabbitmq": compose.RabbitMQOwner},
	"api1":              {"postgres": compose.PostgresApp, "rabbitmq": compose.RabbitMQAPI, "redis": compose.RedisApp},
	"api2":              {"postgres": compose.PostgresApp, "rabbitmq": compose.RabbitMQAPI, "redis": compose.RedisApp},
	"consumer":          {"postgres": compose.PostgresApp, "rabbitmq": compose.RabbitMQConsumer, "redis": compose.RedisApp},
	"postgres-exporter": {"postgres": compose.PostgresMonitor},
	"redis-exporter":    {"redis": compose.RedisMonitor},
}

// credential is one service's way into one engine, as compose hands it
// over.
type credential struct {
	engine, user, host string
	tls                bool   // encrypted and the server verified
	caFile             string // where the service reads the CA
	why                string // what is wrong with its TLS settings, if anything
}

// credentials reads them from a service's environment and command: the
// binaries' DATABASE_URL (with PG_SSLMODE, PG_SSLROOTCERT), RABBITMQ_URL
// (RABBITMQ_TLS_CA_FILE), REDIS_ADDR (REDIS_USERNAME, REDIS_TLS_CA_FILE);
// the exporters' DATA_SOURCE_NAME, -redis.addr (REDIS_USER,
// REDIS_EXPORTER_TLS_CA_CERT_FILE).
func credentials(s types.ServiceConfig) []credential {
	var creds []credential
	pgURL := func(raw, mode, ca string) {
		u, err := url.Parse(raw)
		if err != nil {
			creds = append(creds, credential{engine: "postgres", why: err.Error()})
			return
		}
		if mode == "" {
			mode, ca = u.Query().Get("sslmode"), u.Query().Get("sslrootcert")
		}
		// One per host of a multi-host URL (the HA file's nodes).
		for h := range strings.SplitSeq(u.Host, ",") {
			host, _, err := net.SplitHostPort(h)
			if err != nil {
				host = h
			}
			c := credential{engine: "postgres", user: u.User.Username(), host: host, caFile: ca, tls: mode == "verify-full" && ca != ""}
			if !c.tls {
				c.why = fmt.Sprintf("sslmode %q with CA %q, want verify-full and the stack's CA (PG_SSLMODE, PG_SSLROOTCERT)", mode, ca)
			}
			creds = append(creds, c)
		}
	}
	if raw := env(s, "DATABASE_URL"); raw != "" {
		pgURL(raw, env(s, "PG_SSLMODE"), env(s, "PG_SSLROOTCERT"))
	}
	if raw := env(s, "DATA_SOURCE_NAME"); raw != "" {
		pgURL(raw, "", "")
	}
	for raw := range strings.SplitSeq(env(s, "RABBITMQ_URL"), ",") {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			creds = append(creds, credential{engine: "rabbitmq", why: err.Error()})
			continue
		}
		c := credential{engine: "rabbitmq", user: u.User.Username(), host: u.Hostname(), caFile: env(s, "RABBITMQ_TLS_CA_FILE")}
		c.tls = u.Scheme == "amqps" && c.caFile != ""
		if !c.tls {
			c.why = fmt.Sprintf("%s:// with CA %q, want amqps:// and RABBITMQ_TLS_CA_FILE", u.Scheme, c.caFile)
		}
		creds = append(creds, c)
	}
	redisAddr := func(addr, user, ca string) {
		for a := range strings.SplitSeq(addr, ",") {
			c := credential{engine: "redis", user: user, caFile: ca}
			rest, ok := strings.CutPrefix(a, "rediss://")
			c.host, _, _ = net.SplitHostPort(strings.TrimPrefix(rest, "redis://"))
			c.tls = ok && ca != ""
			if !c.tls {
				c.why = fmt.Sprintf("%s is not rediss:// with a CA (%q)", a, ca)
			}
			creds = append(creds, c)
		}
	}
	if addr := env(s, "REDIS_ADDR"); addr != "" {
		redisAddr(addr, env(s, "REDIS_USERNAME"), env(s, "REDIS_TLS_CA_FILE"))
	}
	if i := slices.Index(s.Command, "-redis.addr"); i >= 0 && i+1 < len(s.Command) {
		redisAddr(s.Command[i+1], env(s, "REDIS_USER"), env(s, "REDIS_EXPORTER_TLS_CA_CERT_FILE"))
	}
	return creds
}

// checkServiceCredentials: every service that connects to an engine does
// so as its own user (engineUsers) over verified TLS, reading the CA where
// it is mounted; none as an engine's superuser, administrator or default
// user; and no engine makes such a user for anyone to take.
func checkServiceCredentials(t *testing.T, tr tree) []string {
	p := tr.project(t)
	var problems []string
	for _, pg := range engineServices(p, "postgres") {
		// The image's superuser (POSTGRES_USER), or Patroni's.
		superuser := env(service(t, p, pg), "POSTGRES_USER") + env(service(t, p, pg), "PATRONI_SUPERUSER_USERNAME")
		if superuser == compose.PostgresOwner || superuser == compose.PostgresApp || superuser == compose.PostgresMonitor {
			problems = append(problems, pg+": "+superuser+" is a role a service uses: the image makes it a superuser")
		}
	}
	for _, mq := range engineServices(p, "rabbitmq") {
		for _, name := range []string{"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"} {
			if v := env(service(t, p, mq), name); v != "" {
				problems = append(problems, mq+": "+name+" is set: the image would make that user an administrator")
			}
		}
	}
	for _, name := range sorted(p.ServiceNames()) {
		s := service(t, p, name)
		creds := credentials(s)
		want, ok := engineUsers[name]
		if !ok { // the HA file's consumer2, postgres-exporter1…, redis-exporter1…
			want = engineUsers[strings.TrimRight(name, "0123456789")]
		}
		seen := map[string]bool{}
		for _, c := range creds {
			seen[c.engine] = true
			wantUser, ok := want[c.engine]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s connects to %s as %q, which engineUsers does not give it", name, c.engine, c.user))
				continue
			case c.user == "" || c.user == "default":
				problems = append(problems, fmt.Sprintf("%s connects to Redis as the default user, want %s", name, wantUser))
			case c.user != wantUser:
				problems = append(problems, fmt.Sprintf("%s connects to %s as %s, want %s", name, engineName(c.engine), c.user, wantUser))
			}
			if c.why != "" {
				problems = append(problems, fmt.Sprintf("%s → %s: %s", name, c.engine, c.why))
			} else if !mountsFile(s, c.caFile, generatedCA) {
				problems = append(problems, fmt.Sprintf("%s → %s: CA %s, where the stack's CA (%s) is not mounted", name, c.engine, c.caFile, generatedCA))
			}
		}
		for e := range want {
			if !seen[e] {
				problems = append(problems, fmt.Sprintf("%s does not connect to %s: engineUsers says it does", name, e))
			}
		}
	}
	return problems
}

// engineServices are the services of an engine kind: postgres, redis,
// rabbitmq in docker-compose.yml; their nodes (postgres1…) in the HA file.
func engineServices(p *types.Project, kind string) []string {
	if _, err := p.GetService(kind); err == nil {
		return []string{kind}
	}
	return nodes(p, kind)
}

func engineName(e string) string {
	return map[string]string{"postgres": "PostgreSQL", "rabbitmq": "RabbitMQ", "redis": "Redis"}[e]
}

// mountsFile: s mounts the repository-relative source at target.
func mountsFile(s types.ServiceConfig, target, source string) bool {
	for _, v := range s.Volumes {
		if rel, _ := filepath.Rel(root, v.Source); v.Target == target && rel == source {
			return true
		}
	}
	return false
}

// checkEngineCerts: each engine serves the certificate `make
// compose-secrets` makes for it, mounted from where it makes it; the
// certificate chains to the stack's CA and carries every name a service
// dials the engine by.
func checkEngineCerts(t *testing.T, tr tree) []string {
	p := tr.project(t)
	g := makeGenerated(t, tr.composeFile())
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(g.caDir, native.CAFile))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("the CA: %v", err)
	}
	var problems []string
	for kind := range compose.EngineHosts {
		for _, engineSvc := range engineServices(p, kind) {
			s := service(t, p, engineSvc)
			dir := engineFiles(t, g, s)
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: its certificate and key (/kvstack/engine-in): %v", engineSvc, err))
				continue
			}
			cert, _ := x509.ParseCertificate(pair.Certificate[0])
			for _, name := range sorted(p.ServiceNames()) {
				for _, c := range credentials(service(t, p, name)) {
					// Each host is checked against the certificate of the
					// node of its name, or of the one engine service.
					nodes := engineServices(p, kind)
					if c.engine == kind && len(nodes) > 1 && engineSvc == nodes[0] && !slices.Contains(nodes, c.host) {
						problems = append(problems, fmt.Sprintf("%s dials %s as %s, which no node of %v is", name, kind, c.host, nodes))
					}
					if c.engine != kind || c.host == "" || (c.host != engineSvc && (slices.Contains(nodes, c.host) || len(nodes) > 1)) {
						continue
					}
					if _, err := cert.Verify(x509.VerifyOptions{DNSName: c.host, Roots: roots}); err != nil {
						problems = append(problems, fmt.Sprintf("%s dials %s as %s: %v", name, engineSvc, c.host, err))
					}
				}
			}
		}
	}
	return problems
}

// checkRedisOnRealServer runs redis-server with compose's redis.conf, the
// files its entrypoint copies and the ACL file lab/compose renders, then
// tries each service's credentials: the default user is off, nothing
// answers in plain text, the app's user may touch the cache's keys alone,
// the monitor's no key, and the container's probe passes.
func checkRedisOnRealServer(t *testing.T, tr tree) []string {
	p := tr.project(t)
	g := makeGenerated(t, tr.composeFile())
	s := service(t, p, "redis")
	if len(s.Command) != 2 || s.Command[0] != "redis-server" {
		t.Fatalf("redis: command %v, want redis-server and its config file", s.Command)
	}
	run := engineFiles(t, g, s)
	confRel, ok := strings.CutPrefix(s.Command[1], repoInContainers+"/")
	if !ok {
		t.Fatalf("redis: config %s is not the repository's", s.Command[1])
	}
	conf := string(tr.read(t, confRel))
	ports, err := engine.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[0])
	// Where this server keeps its files and listens, the rest as compose's.
	conf = strings.ReplaceAll(conf, "/run/kvstack/", run+"/")
	conf = regexp.MustCompile(`(?m)^dir .*$`).ReplaceAllString(conf, "dir "+run)
	tlsPort := regexp.MustCompile(`(?m)^tls-port (\d+)$`)
	var problems []string
	if m := tlsPort.FindStringSubmatch(conf); m == nil || m[1] != "6379" {
		problems = append(problems, "redis.conf: no tls-port 6379, the port REDIS_ADDR names")
	}
	conf = tlsPort.ReplaceAllString(conf, "tls-port "+port)
	plain := regexp.MustCompile(`(?m)^port (\d+)$`)
	if m := plain.FindStringSubmatch(conf); m == nil || m[1] != "0" {
		problems = append(problems, "redis.conf: Redis answers in plain text (want port 0)")
	}
	plainPort := ""
	if m := plain.FindStringSubmatch(conf); m != nil && m[1] != "0" {
		pp, err := engine.FreePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		plainPort = strconv.Itoa(pp[0])
		conf = plain.ReplaceAllString(conf, "port "+plainPort)
	}
	confFile := filepath.Join(run, "redis.conf")
	if err := os.WriteFile(confFile, []byte(conf+"bind 127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", confFile)
	out := &syncbuf.Buffer{} // redis-server writes it while the test reads it
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v (make setup installs it)", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	api, exporter := service(t, p, "api1"), service(t, p, "redis-exporter")
	client := func(user, password string) *goredis.Client {
		cfg, err := tlsconf.Client(filepath.Join(run, "ca.pem"), "redis") // the name the services dial
		if err != nil {
			t.Fatal(err)
		}
		c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + port, TLSConfig: cfg, Username: user, Password: password,
			DialTimeout: time.Second, MaxRetries: -1, Protocol: 2})
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx := context.Background()
	app := client(env(api, "REDIS_USERNAME"), env(api, "REDIS_PASSWORD"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := app.Ping(ctx).Err()
		if err == nil {
			break
		}
		// Refused by a server that runs, it always will be: the users
		// are read at start.
		if authRefusal.MatchString(err.Error()) || time.Now().After(deadline) {
			return append(problems, fmt.Sprintf("api1's Redis user cannot PING over TLS: %v\nredis-server says:\n%s", err, out.String()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	expect := func(what string, err error, allowed bool) {
		switch {
		case allowed && err != nil:
			problems = append(problems, what+": refused: "+err.Error())
		case !allowed && err == nil:
			problems = append(problems, what+": allowed")
		}
	}
	prefix := "kv:" // REDIS_KEY_PREFIX's default; compose sets none
	expect("the app's user: HSET on the cache's keys", app.HSet(ctx, prefix+"probe", "v", "1").Err(), true)
	expect("the app's user: SET outside the cache's keys", app.Set(ctx, "other", "1", 0).Err(), false)
	expect("the app's user: FLUSHALL", app.FlushAll(ctx).Err(), false)
	expect("the app's user: CONFIG GET", app.ConfigGet(ctx, "maxmemory").Err(), false)
	mon := client(env(exporter, "REDIS_USER"), env(exporter, "REDIS_PASSWORD"))
	expect("the exporter's user: INFO", mon.Info(ctx).Err(), true)
	expect("the exporter's user: HGET of a key", mon.HGet(ctx, prefix+"probe", "v").Err(), false)
	expect("a client without a password: PING", client("", "").Ping(ctx).Err(), false)
	expect("the default user with an empty password: PING", client("default", "").Ping(ctx).Err(), false)
	expect("the app's user with the monitor's password", client(env(api, "REDIS_USERNAME"), env(exporter, "REDIS_PASSWORD")).Ping(ctx).Err(), false)
	if plainPort != "" {
		c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + plainPort, Username: env(api, "REDIS_USERNAME"), Password: env(api, "REDIS_PASSWORD"), MaxRetries: -1, Protocol: 2})
		defer c.Close()
		expect("plain text: PING without TLS", c.Ping(ctx).Err(), false)
	}
	// The container's probe, as its healthcheck runs it (redis-cli reads
	// the password from REDISCLI_AUTH).
	if hc := s.HealthCheck; hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
		problems = append(problems, "redis: healthcheck is not a CMD")
	} else {
		args := append([]string{"-h", "127.0.0.1", "-p", port}, hc.Test[2:]...)
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "/run/kvstack/", run+"/")
		}
		probe := exec.Command(hc.Test[1], args...)
		probe.Env = []string{"REDISCLI_AUTH=" + env(s, "REDISCLI_AUTH")}
		got, err := probe.CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != "PONG" {
			problems = append(problems, fmt.Sprintf("redis: the healthcheck %v answers %q (%v), want PONG", hc.Test, got, err))
		}
	}
	return problems
}

// checkRolesOnRealEngines runs compose's PostgreSQL init script (as the
// image runs it, as its superuser) on a private PostgreSQL, imports the
// RabbitMQ definitions lab/compose renders into a private RabbitMQ, runs
// the real cmd/migrate with compose's environment for it, then tries each
// service's credentials there for what it may and may not do.
func checkRolesOnRealEngines(t *testing.T, tr tree) []string {
	p := tr.project(t)
	g := makeGenerated(t, tr.composeFile())
	ctx := context.Background()
	var problems []string

	// PostgreSQL: a fresh start, as on an empty data directory.
	superURL := privatePG.URL(t)
	superuser, err := pgx.Connect(ctx, superURL)
	if err != nil {
		t.Fatal(err)
	}
	defer superuser.Close(ctx)
	for _, stmt := range []string{"DROP DATABASE IF EXISTS kvstack WITH (FORCE)",
		"DROP ROLE IF EXISTS kvstack_app", "DROP ROLE IF EXISTS kvstack_monitor", "DROP ROLE IF EXISTS kvstack", "DROP ROLE IF EXISTS kvstack_intruder"} {
		if _, err := superuser.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	pgSvc := service(t, p, "postgres")
	var script string
	for _, v := range pgSvc.Volumes {
		if strings.HasPrefix(v.Target, "/docker-entrypoint-initdb.d/") {
			rel, _ := filepath.Rel(root, v.Source)
			script = string(tr.read(t, rel))
		}
	}
	if script == "" {
		return append(problems, "postgres: no init script in /docker-entrypoint-initdb.d: who makes the roles?")
	}
	pgdata := t.TempDir()
	// What the image's entrypoint writes before it runs the init scripts.
	imageHBA := "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nhost all all all scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(pgdata, "pg_hba.conf"), []byte(imageHBA), 0o600); err != nil {
		t.Fatal(err)
	}
	scriptFile := filepath.Join(t.TempDir(), "roles.sh")
	if err := os.WriteFile(scriptFile, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	su, _ := url.Parse(superURL)
	initEnv := []string{"PATH=" + os.Getenv("PATH"), "PGDATA=" + pgdata, "PGHOST=" + su.Hostname(), "PGPORT=" + su.Port()}
	for k, v := range pgSvc.Environment {
		if v != nil && k != "POSTGRES_PASSWORD" { // trust on the private server
			initEnv = append(initEnv, k+"="+*v)
		}
	}
	if out, err := runIn(initEnv, "sh", scriptFile); err != nil {
		return append(problems, fmt.Sprintf("postgres: the init script fails: %v\n%s", err, out))
	}
	hba, _ := os.ReadFile(filepath.Join(pgdata, "pg_hba.conf"))
	// The image's loopback lines stay: only the container itself reaches
	// them. Every other address must come over TLS.
	if regexp.MustCompile(`(?m)^host\s+\S+\s+\S+\s+all\s`).Match(hba) || !regexp.MustCompile(`(?m)^hostssl all all all scram-sha-256$`).Match(hba) {
		problems = append(problems, fmt.Sprintf("postgres: pg_hba.conf after the init script lets a password cross the network without TLS:\n%s", hba))
	}

	// RabbitMQ: the users and permissions of the definitions file.
	// rabbitmqctl runs as user rabbitmq, which must read the file: a copy
	// outside the test's private directories.
	shared, err := os.MkdirTemp("", "composetest-definitions")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(shared)
	defsText, err := os.ReadFile(filepath.Join(g.dir, compose.RabbitMQDefinitionsFile))
	if err != nil {
		t.Fatal(err)
	}
	defsFile := filepath.Join(shared, compose.RabbitMQDefinitionsFile)
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(defsFile, defsText, 0o644); err != nil {
		t.Fatal(err)
	}
	privateBroker.ImportDefinitions(t, defsFile)
	var defs struct {
		Users []struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		} `json:"users"`
	}
	if err := json.Unmarshal(defsText, &defs); err != nil {
		t.Fatal(err)
	}
	for _, u := range defs.Users {
		if len(u.Tags) > 0 {
			problems = append(problems, fmt.Sprintf("rabbitmq: user %s has tags %v: none may manage the broker", u.Name, u.Tags))
		}
	}

	// Each service's URLs, pointed at the private engines, verified against
	// their CAs.
	pgPort := su.Port()
	pgCA, mqCA := privatePG.TLSFiles(t).CA, privateBroker.TLSFiles(t).CA
	mqTLS, _ := url.Parse(privateBroker.TLSURL(t))
	private := func(raw string) string {
		raw = strings.Replace(raw, "@postgres:5432/", "@"+enginetest.TLSHost+":"+pgPort+"/", 1)
		return strings.Replace(raw, "@rabbitmq:"+amqpsPort+"/", "@"+mqTLS.Host+"/", 1)
	}
	migrate := service(t, p, "migrate")
	migrateEnv := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range migrate.Environment {
		switch {
		case v == nil:
		case k == "PG_SSLROOTCERT":
			migrateEnv = append(migrateEnv, k+"="+pgCA)
		case k == "RABBITMQ_TLS_CA_FILE":
			migrateEnv = append(migrateEnv, k+"="+mqCA)
		default:
			migrateEnv = append(migrateEnv, k+"="+private(*v))
		}
	}
	if out, err := runIn(migrateEnv, builtBinary(t, "migrate")); err != nil {
		return append(problems, fmt.Sprintf("migrate, with compose's environment: %v\n%s", err, out))
	}

	connect := func(name, raw, mode string) (*pgx.Conn, string) {
		cs, err := postgres.Config{URL: private(raw), SSLMode: mode, SSLRootCert: pgCA}.ConnString()
		if err != nil {
			t.Fatal(err)
		}
		c, err := pgx.Connect(ctx, cs)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s cannot connect to PostgreSQL: %v", name, err))
			return nil, ""
		}
		t.Cleanup(func() { c.Close(ctx) })
		u, _ := url.Parse(raw)
		pw, _ := u.User.Password()
		return c, pw
	}
	may := func(who string, c *pgx.Conn, what, sql string, allowed bool) {
		_, err := c.Exec(ctx, sql)
		switch {
		case allowed && err != nil:
			problems = append(problems, fmt.Sprintf("%s could not %s: %v", who, what, err))
		case !allowed && err == nil:
			problems = append(problems, fmt.Sprintf("%s could %s", who, what))
		}
	}
	password := func(who, role, pw string) {
		var stored string
		if err := superuser.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored); err != nil {
			problems = append(problems, fmt.Sprintf("%s: role %s: %v", who, role, err))
			return
		}
		if !scramMatches(stored, pw) {
			problems = append(problems, fmt.Sprintf("%s: the password in its URL is not %s's password", who, role))
		}
	}
	for _, name := range []string{"api1", "api2", "consumer"} {
		s := service(t, p, name)
		c, pw := connect(name, env(s, "DATABASE_URL"), env(s, "PG_SSLMODE"))
		if c == nil {
			continue
		}
		password(name, compose.PostgresApp, pw)
		who := compose.PostgresApp + " (" + name + ")"
		may(who, c, "read kv_store", "SELECT count(*) FROM kv_store", true)
		may(who, c, "read the token key", "SELECT count(*) FROM kv_settings", true)
		may(who, c, "CREATE TABLE", "CREATE TABLE intruder (x int)", false)
		may(who, c, "change the token key", "DELETE FROM kv_settings", false)
		may(who, c, "TRUNCATE kv_store", "TRUNCATE kv_store", false)
	}
	exp := service(t, p, "postgres-exporter")
	if c, pw := connect("postgres-exporter", env(exp, "DATA_SOURCE_NAME"), ""); c != nil {
		password("postgres-exporter", compose.PostgresMonitor, pw)
		who := compose.PostgresMonitor + " (postgres-exporter)"
		may(who, c, "read the statistics", "SELECT count(*) FROM pg_stat_activity", true)
		may(who, c, "read kv_store", "SELECT count(*) FROM kv_store", false)
		may(who, c, "read the token key", "SELECT count(*) FROM kv_settings", false)
	}
	if _, pw := connect("migrate", env(migrate, "DATABASE_URL"), env(migrate, "PG_SSLMODE")); pw != "" {
		password("migrate", compose.PostgresOwner, pw)
	}
	// Any other role: no connection, hence no NOTIFY on the applied channel.
	if _, err := superuser.Exec(ctx, "CREATE ROLE kvstack_intruder LOGIN"); err != nil {
		t.Fatal(err)
	}
	intruder := strings.Replace(superURL, "postgres@", "kvstack_intruder@", 1)
	intruder = strings.Replace(intruder, "/postgres", "/kvstack", 1)
	if c, err := pgx.Connect(ctx, intruder); err == nil {
		c.Close(ctx)
		problems = append(problems, "a role of no service (PUBLIC) could connect to database kvstack")
	}
	for _, role := range []string{compose.PostgresOwner, compose.PostgresApp, compose.PostgresMonitor} {
		var super, createdb, createrole bool
		if err := superuser.QueryRow(ctx, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1", role).Scan(&super, &createdb, &createrole); err != nil {
			problems = append(problems, fmt.Sprintf("role %s: %v", role, err))
		} else if super || createdb || createrole {
			problems = append(problems, fmt.Sprintf("role %s: superuser %v, createdb %v, createrole %v", role, super, createdb, createrole))
		}
	}

	// RabbitMQ: the API's user publishes and nothing else, the consumer's
	// consumes and nothing else, each verified over AMQPS.
	dialMQ := func(name string) *amqp.Channel {
		s := service(t, p, name)
		cfg, err := tlsconf.Client(mqCA, "")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := amqp.DialTLS(private(env(s, "RABBITMQ_URL")), cfg)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s cannot connect to RabbitMQ: %v", name, err))
			return nil
		}
		t.Cleanup(func() { conn.Close() })
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	// A refusal closes the channel: each try gets one of its own.
	mqMay := func(name, what string, allowed bool, try func(ch *amqp.Channel) error) {
		ch := dialMQ(name)
		if ch == nil {
			return
		}
		err := try(ch)
		switch {
		case allowed && err != nil:
			problems = append(problems, fmt.Sprintf("%s could not %s: %v", name, what, err))
		case !allowed && err == nil:
			problems = append(problems, fmt.Sprintf("%s could %s", name, what))
		}
	}
	publish := func(ch *amqp.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirm("", "add_key", false, false, amqp.Publishing{Body: []byte("{}")})
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ok, err := dc.WaitContext(wctx)
		if err == nil && !ok {
			err = errors.New("nacked")
		}
		if err == nil {
			// A refused publish closes the channel after the fact: ask
			// the channel something to hear it.
			_, err = ch.QueueDeclarePassive("add_key", true, false, false, false, nil)
		}
		return err
	}
	consume := func(ch *amqp.Channel) error {
		_, err := ch.Consume("add_key", "", false, false, false, false, nil)
		return err
	}
	declare := func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("kvstack-intruder", false, true, false, false, nil)
		return err
	}
	mqMay("api1", "publish to a work queue", true, publish)
	mqMay("api1", "consume a work queue", false, consume)
	mqMay("api1", "declare a queue", false, declare)
	mqMay("consumer", "consume a work queue", true, consume)
	mqMay("consumer", "publish to a work queue", false, publish)
	mqMay("consumer", "declare a queue", false, declare)
	return problems
}

func runIn(environ []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = environ
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// scramMatches: stored, a role's SCRAM-SHA-256 verifier as PostgreSQL
// keeps it (SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey, RFC 5802),
// is password's.
func scramMatches(stored, password string) bool {
	m := regexp.MustCompile(`^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):`).FindStringSubmatch(stored)
	if m == nil {
		return false
	}
	iter, _ := strconv.Atoi(m[1])
	salt, err1 := base64.StdEncoding.DecodeString(m[2])
	storedKey, err2 := base64.StdEncoding.DecodeString(m[3])
	if err1 != nil || err2 != nil {
		return false
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, salted)
	mac.Write([]byte("Client Key"))
	sum := sha256.Sum256(mac.Sum(nil))
	return hmac.Equal(sum[:], storedKey)
}
