package native

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/auth/mint"
)

// EnvFile is the list of the topology's ports, at the repository's root.
const EnvFile = "stack.env"

// Variable is one setting of the native stack beyond stack.env's ports,
// with its default: this table is the one place those defaults are written
// (`bin/stack env` prints it). A default may use ${NAME} of a variable
// listed before it, of stack.env, or ${ROOT} (the repository).
type Variable struct {
	Name, Default, Doc string
}

// ProductionSampler is the sampling kvstack ships for production, as the
// variables internal/telemetry.SamplerFromEnv reads: docker-compose.yml,
// docker-compose.ha.yml and the Helm chart's prod values set it
// (deploy/composetest fails when one of them says otherwise), and the
// bench measures it (lab/bench). Parent-based, 10 % of the traces that
// start at the API: the edge drops clients' traceparent unless they are
// trusted, so the API's ratio decides, and the consumer follows that
// decision through the message. The native stack keeps every trace
// (OTEL_TRACES_SAMPLER_ARG below).
var ProductionSampler = []string{"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.1"}

// Variables is read in this order; an environment variable of the same
// name, when not empty, wins over the default.
var Variables = []Variable{
	{"KV_STACK_DIR", "${ROOT}/.stack", "the stack's state: supervisord.conf, logs/, config/ (rendered templates), Prometheus and Alertmanager data"},
	{"KV_BIND_HOST", "127.0.0.1", "the address every process listens on"},
	{"KV_TOPOLOGY", "single", "single: one PostgreSQL, Redis and RabbitMQ (make up). ha: make up-ha's, a RabbitMQ cluster of three nodes, a Redis Cluster of six, a PostgreSQL primary with a synchronous standby, each run by Patroni on an etcd (Patroni promotes the standby when the primary is lost), all the stack's own (data in KV_STACK_DIR/engines) and locked as KV_ENGINES=private locks a single node's (TLS alone, passwords), two consumers, an exporter per node. One topology runs at a time in KV_STACK_DIR; down, status and logs act on the one that runs"},
	{"KV_ENGINES", "shared", "shared: the machine's PostgreSQL, Redis and RabbitMQ on stack.env's ports (lab/scripts/services.sh starts them when missing; down leaves them running). private: the stack runs its own on those ports under its supervisord, data in KV_STACK_DIR/engines (for a stack that must share no queue, cache or table with another on the same machine), each serving TLS alone with a certificate from the stack's CA and asking for passwords the stack makes (KV_STACK_DIR/engine-passwords): the URLs below then default to 127.0.0.1 over verified TLS (make env shows them)"},
	// Point-in-time recovery (KV_ENGINES=private and the HA topology; the shared
	// PostgreSQL is never reconfigured to archive; docs/OPERATIONS.md).
	{"KV_ARCHIVE_TIMEOUT", "60s", "KV_ENGINES=private and the HA topology: PostgreSQL's archive_timeout, the longest a commit waits before its WAL segment reaches the pgBackRest repository: what losing the data directory loses at most"},
	{"KV_BACKUP_INTERVAL", "1h", "KV_ENGINES=private and the HA topology: the backup scheduler (process backups) takes a differential backup when the newest backup is this old"},
	{"KV_BACKUP_FULL_INTERVAL", "24h", "KV_ENGINES=private and the HA topology: a full backup instead when the newest full one is this old"},
	{"KV_BACKUP_MAX_AGE", "3h", "KV_ENGINES=private and the HA topology: a newest backup older than this fires BackupTooOld"},
	{"KV_STACK_TIMEOUT", "60", "seconds a process gets to become healthy"},
	{"KV_STOP_TIMEOUT", "20", "seconds between SIGTERM and SIGKILL when a process is stopped (supervisord's stopwaitsecs)"},
	{"GO", "go", "the go command that builds the binaries"},
	{"KV_PROCESS_USER", "kvstack", "the unprivileged system user every process of the topology runs as when the stack runs as root: the API replicas, the consumers, the exporters, nginx, Prometheus, Alertmanager and Jaeger (make setup and make up make it; the engines and the backup scheduler run as the engines' users); root runs them as root on purpose (make up and make status say so); a checkout closed to that user stops make up, naming the directory"},
	{"KV_API_GOMAXPROCS", "1", "each API replica's GOMAXPROCS (0: Go's default); compose gives each replica `cpus: 1` (lab/bench/NOTES.md)"},
	// docs/DESIGN.md derives the three from the bench's capacity.
	{"NGINX_RATE_LIMIT", "500r/s", "per-client request rate at nginx; past it and the burst, 429 with Retry-After"},
	{"NGINX_RATE_BURST", "1000", "per-client burst at nginx"},
	{"NGINX_WAIT_CONN_LIMIT", "20", "per-client requests waiting for a version (?wait=, ?min_version=) at once at nginx; past it, 429 with Retry-After"},
	{"NGINX_TRACE_TRUSTED", "# nobody", "nginx geo entries (\"10.0.0.0/8 1; 192.0.2.7 1;\") of the clients whose traceparent, tracestate and baggage the edge passes on; from any other it drops them"},
	// The API's own default (internal/httpapi); a test keeps the two equal.
	{"KV_MAX_BODY_BYTES", "1048576", "largest request body; nginx's client_max_body_size"},
	// Identity and access (internal/auth): the stack's signing key is made
	// in KV_STACK_DIR/auth on the first render (SigningKey); `make token`
	// signs with it.
	{"KV_AUTH", "on", "off: the API serves every client as an admin, warns at start, and says so on /readyz and in kvstack_auth_enabled"},
	{"KV_AUTH_ISSUER", mint.LocalIssuer, "the iss the API accepts: `make token`'s"},
	{"KV_AUTH_JWKS_FILE", "${KV_STACK_DIR}/auth/" + mint.JWKSFile, "the public keys the API verifies tokens with (the stack writes it from its key)"},
	{"KV_AUTH_POLICY_FILE", "${ROOT}/deploy/auth/policy.yaml", "the roles' rights on key prefixes"},
	// TLS at the edge: the stack's local CA and the edge's certificate are
	// made in KV_STACK_DIR/tls on the first render (EdgeCerts).
	{"KV_TLS_CA", "${KV_STACK_DIR}/tls/" + CAFile, "the local CA that signs the edge's certificate: what clients of the edge trust (curl --cacert); the lab's clients read it"},
	// TLS inside (KV_ENGINES=private): the stack's own engines serve TLS
	// with certificates from the same CA (EngineCerts); the clients check
	// them against it.
	{"REDIS_TLS_CA_FILE", "", "the CA Redis' certificate must chain to when REDIS_ADDR is rediss://: KV_TLS_CA where the stack runs its own Redis (KV_ENGINES=private, the HA topology)"},
	{"RABBITMQ_TLS_CA_FILE", "", "the CA RabbitMQ's certificate must chain to for amqps:// URLs: KV_TLS_CA where the stack runs its own RabbitMQ (KV_ENGINES=private, the HA topology)"},
	{"ALERT_WEBHOOK_URL", "http://127.0.0.1:9/alerts", "where Alertmanager sends alerts (port 9, discard: nowhere until you say where)"},
	{"KV_ALERT_FOR", "", "test only: replaces every alert's `for:` and Alertmanager's group_wait/group_interval (e.g. 5s)"},
	// Least privilege (docs/SECURITY.md): each process connects as a role
	// of its own. lab/scripts/services.sh (the shared engines) and
	// package engines (the stack's own) make the roles and users these
	// URLs name.
	{"DATABASE_URL", "postgres://kvstack:kvstack@${KV_BIND_HOST}:${PGPORT}/kvstack?sslmode=disable", "PostgreSQL as the owner of the database and schema, for migrate (which grants KV_APP_DATABASE_URL's and POSTGRES_EXPORTER_DSN's roles what they need); in the HA topology both nodes, the client connecting to the one that takes writes"},
	{"KV_APP_DATABASE_URL", "postgres://kvstack_app:kvstack_app@${KV_BIND_HOST}:${PGPORT}/kvstack?sslmode=disable", "PostgreSQL for the replicas and the consumer (their DATABASE_URL): a role that may only read and write kv_store's rows and read kv_settings"},
	{"REDIS_ADDR", "${KV_BIND_HOST}:${REDIS_PORT}", "Redis; several addresses (the HA topology's six nodes) make a Redis Cluster client"},
	{"RABBITMQ_URL", "amqp://guest:guest@${KV_BIND_HOST}:${RABBITMQ_PORT}/", "RabbitMQ as a user who may declare the queues, for migrate; several URLs (the HA topology's three nodes), comma-separated, are tried in turn"},
	{"KV_API_RABBITMQ_URL", "amqp://kvstack_api:kvstack_api@${KV_BIND_HOST}:${RABBITMQ_PORT}/", "RabbitMQ for the replicas (their RABBITMQ_URL): a user who may only publish to the default exchange"},
	{"KV_CONSUMER_RABBITMQ_URL", "amqp://kvstack_consumer:kvstack_consumer@${KV_BIND_HOST}:${RABBITMQ_PORT}/", "RabbitMQ for the consumers (their RABBITMQ_URL): a user who may only consume the work queues"},
	// The shared Redis is the machine's, its users its own: the stack
	// uses its default user. Its own (KV_ENGINES=private, the HA
	// topology) have ACL users (privateDefaults, engines.RedisUsers).
	{"REDIS_USERNAME", "", "the Redis ACL user of the replicas and the consumer: none (the default user) on the shared Redis; kvstack_app, limited to the cache's keys and commands, on the stack's own"},
	{"REDIS_PASSWORD", "", "its password"},
	{"KV_REDIS_EXPORTER_USERNAME", "", "the Redis exporter's ACL user: none on the shared Redis; kvstack_monitor, which may read the server's statistics and no key, on the stack's own"},
	{"KV_REDIS_EXPORTER_PASSWORD", "", "its password"},
	{"POSTGRES_EXPORTER_DSN", "postgres://kvstack_monitor:kvstack_monitor@${KV_BIND_HOST}:${PGPORT}/kvstack?sslmode=disable", "PostgreSQL, for prometheus-postgres-exporter: a member of pg_monitor that may connect and read statistics, and no table of kvstack's. In the HA topology each node's exporter gets it with that node's address alone"},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://${KV_BIND_HOST}:${KV_JAEGER_OTLP_HTTP_PORT}", "where api1, api2 and the consumer send traces"},
	{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", ""},
	// The dev stack keeps every trace; production ships ProductionSampler.
	{"OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "the sampler of api1, api2 and the consumer (internal/telemetry.SamplerFromEnv)"},
	{"OTEL_TRACES_SAMPLER_ARG", "1.0", "its ratio: 100 % on the dev stack, where every trace is wanted; docker compose and the Helm chart's prod values ship 0.1"},
	// Template variables (nginx, Prometheus, Alertmanager); each may be set.
	{"NGINX_LISTEN", "${KV_BIND_HOST}:${KV_NGINX_PORT}", "template: where nginx listens"},
	// Loopback whatever KV_BIND_HOST says: stub_status is never routed.
	{"NGINX_STATUS_LISTEN", "127.0.0.1:${KV_NGINX_STATUS_PORT}", "template: nginx's stub_status (prometheus-nginx-exporter reads it)"},
	{"NGINX_TLS_CERT", "${KV_STACK_DIR}/tls/" + EdgeFile, "template: the edge's certificate (made by the stack, signed by KV_TLS_CA, for localhost, 127.0.0.1 and ::1)"},
	{"NGINX_TLS_KEY", "${KV_STACK_DIR}/tls/" + EdgeKeyFile, "template: its private key"},
	{"API1_ADDR", "${KV_BIND_HOST}:${KV_API1_PORT}", "template: api1"},
	{"API2_ADDR", "${KV_BIND_HOST}:${KV_API2_PORT}", "template: api2"},
	{"CONSUMER_ADDR", "${KV_BIND_HOST}:${KV_CONSUMER_PORT}", "template: the consumer"},
	// Loopback whatever KV_BIND_HOST says: profiles and metrics are for
	// this machine's Prometheus and operators.
	{"API1_ADMIN_ADDR", "127.0.0.1:${KV_API1_ADMIN_PORT}", "template: api1's admin listener (/metrics, /debug/pprof, /debug/vars)"},
	{"API2_ADMIN_ADDR", "127.0.0.1:${KV_API2_ADMIN_PORT}", "template: api2's admin listener"},
	{"CONSUMER_ADMIN_ADDR", "127.0.0.1:${KV_CONSUMER_ADMIN_PORT}", "template: the consumer's admin listener"},
	{"PROMETHEUS_ADDR", "${KV_BIND_HOST}:${KV_PROMETHEUS_PORT}", "template: Prometheus"},
	{"ALERTMANAGER_ADDR", "${KV_BIND_HOST}:${KV_ALERTMANAGER_PORT}", "template: Alertmanager"},
	{"RABBITMQ_METRICS_ADDR", "${KV_BIND_HOST}:${RABBITMQ_METRICS_PORT}", "template: RabbitMQ's rabbitmq_prometheus"},
	{"JAEGER_METRICS_ADDR", "${KV_BIND_HOST}:${KV_JAEGER_METRICS_PORT}", "template: Jaeger's spanmetrics"},
	{"MTAIL_ADDR", "${KV_BIND_HOST}:${KV_MTAIL_PORT}", "template: mtail (the edge's metrics, from nginx's access log)"},
	{"NGINX_EXPORTER_ADDR", "${KV_BIND_HOST}:${KV_NGINX_EXPORTER_PORT}", "template: prometheus-nginx-exporter"},
	{"POSTGRES_EXPORTER_ADDR", "${KV_BIND_HOST}:${KV_POSTGRES_EXPORTER_PORT}", "template: prometheus-postgres-exporter"},
	{"REDIS_EXPORTER_ADDR", "${KV_BIND_HOST}:${KV_REDIS_EXPORTER_PORT}", "template: prometheus-redis-exporter"},
	{"BACKUP_ADDR", "127.0.0.1:${KV_BACKUP_PORT}", "template: the backup scheduler's /metrics (KV_ENGINES=private and the HA topology)"},
	{"PROMETHEUS_RULES_DIR", "${ROOT}/observability/rules", "template: the alerting rules"},
	{"NGINX_ACCESS_LOG", "${KV_STACK_DIR}/logs/nginx-access.log", "template: nginx's JSON access log"},
	// stderr: supervisord writes it to logs/nginx.log, the one writer of that file.
	{"NGINX_ERROR_LOG", "stderr", "template: nginx's error log"},
}

// haDefaults replace the defaults of these Variables in the HA topology
// (KV_TOPOLOGY=ha): the services are its clusters, every node listed,
// reached as privateDefaults reach a single node (the stack's users and
// passwords, verified TLS, 127.0.0.1).
var haDefaults = map[string]string{
	"DATABASE_URL":             "postgres://kvstack:${SECRET_PG_OWNER}@127.0.0.1:${KV_HA_POSTGRES1_PORT},127.0.0.1:${KV_HA_POSTGRES2_PORT}/kvstack?sslmode=verify-full&sslrootcert=${KV_TLS_CA}&target_session_attrs=read-write",
	"KV_APP_DATABASE_URL":      "postgres://kvstack_app:${SECRET_PG_APP}@127.0.0.1:${KV_HA_POSTGRES1_PORT},127.0.0.1:${KV_HA_POSTGRES2_PORT}/kvstack?sslmode=verify-full&sslrootcert=${KV_TLS_CA}&target_session_attrs=read-write",
	"POSTGRES_EXPORTER_DSN":    "postgres://kvstack_monitor:${SECRET_PG_MONITOR}@127.0.0.1:${KV_HA_POSTGRES1_PORT}/kvstack?sslmode=verify-full&sslrootcert=${KV_TLS_CA}",
	"REDIS_ADDR":               "rediss://127.0.0.1:${KV_HA_REDIS1_PORT},rediss://127.0.0.1:${KV_HA_REDIS2_PORT},rediss://127.0.0.1:${KV_HA_REDIS3_PORT},rediss://127.0.0.1:${KV_HA_REDIS4_PORT},rediss://127.0.0.1:${KV_HA_REDIS5_PORT},rediss://127.0.0.1:${KV_HA_REDIS6_PORT}",
	"RABBITMQ_URL":             "amqps://kvstack_admin:${SECRET_RABBITMQ_ADMIN}@127.0.0.1:${KV_HA_RABBITMQ1_PORT}/,amqps://kvstack_admin:${SECRET_RABBITMQ_ADMIN}@127.0.0.1:${KV_HA_RABBITMQ2_PORT}/,amqps://kvstack_admin:${SECRET_RABBITMQ_ADMIN}@127.0.0.1:${KV_HA_RABBITMQ3_PORT}/",
	"KV_API_RABBITMQ_URL":      "amqps://kvstack_api:${SECRET_RABBITMQ_API}@127.0.0.1:${KV_HA_RABBITMQ1_PORT}/,amqps://kvstack_api:${SECRET_RABBITMQ_API}@127.0.0.1:${KV_HA_RABBITMQ2_PORT}/,amqps://kvstack_api:${SECRET_RABBITMQ_API}@127.0.0.1:${KV_HA_RABBITMQ3_PORT}/",
	"KV_CONSUMER_RABBITMQ_URL": "amqps://kvstack_consumer:${SECRET_RABBITMQ_CONSUMER}@127.0.0.1:${KV_HA_RABBITMQ1_PORT}/,amqps://kvstack_consumer:${SECRET_RABBITMQ_CONSUMER}@127.0.0.1:${KV_HA_RABBITMQ2_PORT}/,amqps://kvstack_consumer:${SECRET_RABBITMQ_CONSUMER}@127.0.0.1:${KV_HA_RABBITMQ3_PORT}/",
}

// privateDefaults replace the defaults of these Variables where the stack
// runs its own engines (KV_ENGINES=private, and the HA topology where
// haDefaults has none): their users, with passwords the stack makes
// (SecretsFile), over TLS checked against the stack's CA, on 127.0.0.1,
// where the engines listen and which their certificates name.
var privateDefaults = map[string]string{
	"DATABASE_URL":               "postgres://kvstack:${SECRET_PG_OWNER}@127.0.0.1:${PGPORT}/kvstack?sslmode=verify-full&sslrootcert=${KV_TLS_CA}",
	"KV_APP_DATABASE_URL":        "postgres://kvstack_app:${SECRET_PG_APP}@127.0.0.1:${PGPORT}/kvstack?sslmode=verify-full&sslrootcert=${KV_TLS_CA}",
	"POSTGRES_EXPORTER_DSN":      "postgres://kvstack_monitor:${SECRET_PG_MONITOR}@127.0.0.1:${PGPORT}/kvstack?sslmode=verify-full&sslrootcert=${KV_TLS_CA}",
	"REDIS_ADDR":                 "rediss://127.0.0.1:${REDIS_PORT}",
	"REDIS_TLS_CA_FILE":          "${KV_TLS_CA}",
	"RABBITMQ_URL":               "amqps://kvstack_admin:${SECRET_RABBITMQ_ADMIN}@127.0.0.1:${RABBITMQ_PORT}/",
	"KV_API_RABBITMQ_URL":        "amqps://kvstack_api:${SECRET_RABBITMQ_API}@127.0.0.1:${RABBITMQ_PORT}/",
	"KV_CONSUMER_RABBITMQ_URL":   "amqps://kvstack_consumer:${SECRET_RABBITMQ_CONSUMER}@127.0.0.1:${RABBITMQ_PORT}/",
	"RABBITMQ_TLS_CA_FILE":       "${KV_TLS_CA}",
	"REDIS_USERNAME":             "kvstack_app",
	"REDIS_PASSWORD":             "${SECRET_REDIS_APP}",
	"KV_REDIS_EXPORTER_USERNAME": "kvstack_monitor",
	"KV_REDIS_EXPORTER_PASSWORD": "${SECRET_REDIS_MONITOR}",
}

// Settings is stack.env overlaid with the environment, and every Variable
// resolved: what the native stack runs with.
type Settings struct {
	Root   string // the repository
	Dir    string // KV_STACK_DIR, absolute
	BinDir string // where the Go binaries are built: Root/bin unless set
	// File is stack.env as written, in its order.
	File []Assignment
	vars map[string]string
	// environ is the caller's environment: the binaries' own settings
	// (LOG_LEVEL, PG_MAX_CONNS, …) pass through to them.
	environ map[string]string
	// messageKey is KV_MESSAGE_KEYS, the caller's or the stack's own
	// (MessageKeyFile).
	messageKey string
	// secrets are the passwords of SecretsFile read or made so far.
	secrets map[string]string
}

// Load reads root's stack.env, overlays environ (os.Environ() form; a
// non-empty value wins) and resolves every Variable.
func Load(root string, environ []string) (*Settings, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	file, err := ReadEnvFile(filepath.Join(root, EnvFile))
	if err != nil {
		return nil, err
	}
	env := environMap(environ)
	s := &Settings{Root: root, BinDir: filepath.Join(root, "bin"), File: file, vars: map[string]string{}, environ: env, secrets: map[string]string{}}
	pick := func(name, def string) {
		if v := env[name]; v != "" {
			s.vars[name] = v
			return
		}
		s.vars[name] = def
	}
	for _, a := range file {
		pick(a.Name, a.Value)
		if _, err := strconv.ParseUint(s.vars[a.Name], 10, 16); strings.HasSuffix(a.Name, "PORT") && err != nil {
			return nil, fmt.Errorf("%s=%q: not a port", a.Name, s.vars[a.Name])
		}
	}
	for _, v := range Variables {
		def, err := s.expand(s.defaultOf(v))
		if err != nil {
			return nil, fmt.Errorf("default of %s: %w", v.Name, err)
		}
		pick(v.Name, def)
		if v.Name == "KV_TOPOLOGY" && s.vars[v.Name] != "single" && s.vars[v.Name] != "ha" {
			return nil, fmt.Errorf("KV_TOPOLOGY=%s: want single or ha", s.vars[v.Name])
		}
	}
	if s.Dir, err = filepath.Abs(s.vars["KV_STACK_DIR"]); err != nil {
		return nil, err
	}
	for _, name := range []string{"KV_STACK_TIMEOUT", "KV_STOP_TIMEOUT"} {
		if n, err := strconv.Atoi(s.vars[name]); err != nil || n <= 0 {
			return nil, fmt.Errorf("%s=%q: want a number of seconds", name, s.vars[name])
		}
	}
	for _, name := range []string{"KV_ARCHIVE_TIMEOUT", "KV_BACKUP_INTERVAL", "KV_BACKUP_FULL_INTERVAL", "KV_BACKUP_MAX_AGE"} {
		if d, err := time.ParseDuration(s.vars[name]); err != nil || d < time.Second {
			return nil, fmt.Errorf("%s=%q: want a duration of a second or more, such as 60s or 1h", name, s.vars[name])
		}
	}
	if e := s.vars["KV_ENGINES"]; e != "shared" && e != "private" {
		return nil, fmt.Errorf("KV_ENGINES=%s: want shared or private", e)
	}
	if s.HA() {
		for _, n := range s.HANodes().Redis {
			if n.Port+redisBusOffset > 65535 {
				return nil, fmt.Errorf("%s's port %d: its cluster bus port, %d higher, is past 65535", n.Name, n.Port, redisBusOffset)
			}
		}
	}
	if s.PrivateEngines() {
		for _, name := range engineSecrets {
			if _, err := s.secret(name); err != nil {
				return nil, err
			}
		}
	}
	if s.messageKey, err = s.messageKeys(); err != nil {
		return nil, fmt.Errorf("KV_MESSAGE_KEYS: %w", err)
	}
	if f := s.vars["KV_ALERT_FOR"]; f != "" && !regexp.MustCompile(`^[0-9]+(ms|s|m)$`).MatchString(f) {
		return nil, fmt.Errorf("KV_ALERT_FOR=%s: want a duration such as 5s", f)
	}
	return s, nil
}

// defaultOf is a Variable's default in the topology chosen so far.
func (s *Settings) defaultOf(v Variable) string {
	if d, ok := haDefaults[v.Name]; ok && s.vars["KV_TOPOLOGY"] == "ha" {
		return d
	}
	if d, ok := privateDefaults[v.Name]; ok && (s.vars["KV_TOPOLOGY"] == "ha" || s.vars["KV_ENGINES"] == "private") {
		return d
	}
	return v.Default
}

var reference = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`)

// expand replaces ${NAME} by a variable already resolved, ROOT, or
// SECRET_X, the stack's password X (made when missing).
func (s *Settings) expand(text string) (string, error) {
	var missing []string
	var errs []error
	out := reference.ReplaceAllStringFunc(text, func(ref string) string {
		name := ref[2 : len(ref)-1]
		if name == "ROOT" {
			return s.Root
		}
		if secret, ok := strings.CutPrefix(name, "SECRET_"); ok {
			v, err := s.secret(secret)
			errs = append(errs, err)
			return v
		}
		v, ok := s.vars[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("refers to %s, not set before it", strings.Join(missing, ", "))
	}
	return out, errors.Join(errs...)
}

// Get returns a resolved variable: a stack.env name or a Variable. It
// panics on any other name, a programming error.
func (s *Settings) Get(name string) string {
	v, ok := s.vars[name]
	if !ok {
		panic("native: no setting " + name)
	}
	return v
}

// PrivateEngines tells whether the stack runs its own PostgreSQL, Redis
// and RabbitMQ (KV_ENGINES=private, or the HA topology's clusters).
func (s *Settings) PrivateEngines() bool { return s.Get("KV_ENGINES") == "private" || s.HA() }

// Backups is true when the stack backs its PostgreSQL up: a stack with
// engines of its own (KV_ENGINES=private, or the HA topology's), whose
// PostgreSQL archives with pgBackRest and whose process `backups`
// schedules the backups. The shared PostgreSQL is not the stack's to
// archive (docs/OPERATIONS.md).
func (s *Settings) Backups() bool { return s.PrivateEngines() }

// HA tells whether the settings are the HA topology's (KV_TOPOLOGY=ha).
func (s *Settings) HA() bool { return s.Get("KV_TOPOLOGY") == "ha" }

// Host is where every process listens (KV_BIND_HOST).
func (s *Settings) Host() string { return s.Get("KV_BIND_HOST") }

// Addr is host:port for a port variable of stack.env.
func (s *Settings) Addr(portVar string) string {
	return net.JoinHostPort(s.Host(), s.Get(portVar))
}

// StartTimeout is how long a process gets to become healthy.
func (s *Settings) StartTimeout() time.Duration { return s.seconds("KV_STACK_TIMEOUT") }

// StopTimeout is how long a stopped process gets before SIGKILL.
func (s *Settings) StopTimeout() time.Duration { return s.seconds("KV_STOP_TIMEOUT") }

// Duration is a setting that holds a duration (checked by Load).
func (s *Settings) Duration(name string) time.Duration {
	d, _ := time.ParseDuration(s.Get(name))
	return d
}

func (s *Settings) seconds(name string) time.Duration {
	n, _ := strconv.Atoi(s.Get(name)) // checked by Load
	return time.Duration(n) * time.Second
}

// LogFile is where a process's output goes.
func (s *Settings) LogFile(name string) string { return filepath.Join(s.Dir, "logs", name+".log") }

// ConfigDir holds the rendered templates.
func (s *Settings) ConfigDir() string { return filepath.Join(s.Dir, "config") }

// appPrefixes name the variables kvstack's binaries read (internal/config,
// OpenTelemetry's, the Go runtime's); the caller's values pass through to
// them unless the stack sets the variable itself. A test checks that every
// env tag of the binaries' configuration matches.
var appPrefixes = []string{"KV_", "PG_", "REDIS_", "RABBITMQ_", "CONSUMER_", "OTEL_", "LOG_LEVEL", "DATABASE_URL", "GOGC", "GOMEMLIMIT", "GODEBUG"}

// appEnv is the environment every kvstack binary gets: the services'
// addresses and traces' endpoint, and whatever the caller set for them.
func (s *Settings) appEnv() map[string]string {
	own := map[string]bool{}
	for _, a := range s.File {
		own[a.Name] = true
	}
	for _, v := range Variables {
		own[v.Name] = true
	}
	env := map[string]string{}
	for name, value := range s.environ {
		if own[name] {
			continue
		}
		for _, p := range appPrefixes {
			if strings.HasPrefix(name, p) {
				env[name] = value
				break
			}
		}
	}
	for _, name := range []string{"DATABASE_URL", "REDIS_ADDR", "RABBITMQ_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "KV_MAX_BODY_BYTES",
		"KV_AUTH", "KV_AUTH_ISSUER", "KV_AUTH_JWKS_FILE", "KV_AUTH_POLICY_FILE", "REDIS_USERNAME", "REDIS_PASSWORD",
		"REDIS_TLS_CA_FILE", "RABBITMQ_TLS_CA_FILE"} {
		env[name] = s.Get(name)
	}
	env["KV_MESSAGE_KEYS"] = s.messageKey
	env["DATABASE_URL"] = s.Get("KV_APP_DATABASE_URL")
	return env
}

// migrateEnv is cmd/migrate's environment: the owner's DATABASE_URL, and
// the roles it grants (PostgresRoles).
func (s *Settings) migrateEnv() map[string]string {
	env := s.appEnv()
	env["DATABASE_URL"] = s.Get("DATABASE_URL")
	r := s.PostgresRoles()
	env["KV_MIGRATE_APP_ROLES"] = r.App.User
	if r.Monitor.User != r.Owner.User {
		env["KV_MIGRATE_MONITOR_ROLES"] = r.Monitor.User
	}
	return env
}

// Credential is a user and its password, from a URL of the settings.
type Credential struct{ User, Password string }

func credential(rawURL string) Credential {
	// A multi-host PostgreSQL URL (h1:p1,h2:p2) is no valid URL for
	// net/url: only the part before the hosts matters here.
	rest, ok := strings.CutPrefix(rawURL, "postgres://")
	if !ok {
		rest, _ = strings.CutPrefix(rawURL, "postgresql://")
	}
	userinfo, _, found := strings.Cut(rest, "@")
	if !found {
		return Credential{}
	}
	user, pass, _ := strings.Cut(userinfo, ":")
	if u, err := url.PathUnescape(user); err == nil {
		user = u
	}
	if p, err := url.PathUnescape(pass); err == nil {
		pass = p
	}
	return Credential{User: user, Password: pass}
}

// RabbitMQCredentials are the users of RABBITMQ_URL (migrate's, which
// declares the queues), KV_API_RABBITMQ_URL and KV_CONSUMER_RABBITMQ_URL
// (their first URL's).
func (s *Settings) RabbitMQCredentials() (admin, api, consumer Credential) {
	first := func(name string) Credential {
		raw, _, _ := strings.Cut(s.Get(name), ",")
		u, err := url.Parse(raw)
		if err != nil || u.User == nil {
			return Credential{}
		}
		p, _ := u.User.Password()
		return Credential{User: u.User.Username(), Password: p}
	}
	return first("RABBITMQ_URL"), first("KV_API_RABBITMQ_URL"), first("KV_CONSUMER_RABBITMQ_URL")
}

// RedisKeyPrefix is the cache's key prefix the binaries use: the
// caller's REDIS_KEY_PREFIX, or its default.
func (s *Settings) RedisKeyPrefix() string {
	if p := s.environ["REDIS_KEY_PREFIX"]; p != "" {
		return p
	}
	return "kv:"
}

// WorkQueues are the names of the work queues the binaries use: the
// caller's RABBITMQ_QUEUE_ADD and RABBITMQ_QUEUE_DEL, or their defaults.
func (s *Settings) WorkQueues() (add, del string) {
	add, del = s.environ["RABBITMQ_QUEUE_ADD"], s.environ["RABBITMQ_QUEUE_DEL"]
	if add == "" {
		add = "add_key"
	}
	if del == "" {
		del = "del_key"
	}
	return add, del
}

// PostgresRoles are the PostgreSQL roles of the stack: the owner
// (DATABASE_URL: migrate), the app's (KV_APP_DATABASE_URL: the replicas
// and the consumer) and the exporter's (POSTGRES_EXPORTER_DSN).
type PostgresRoles struct{ Owner, App, Monitor Credential }

// PostgresRoles reads them from the settings' URLs.
func (s *Settings) PostgresRoles() PostgresRoles {
	return PostgresRoles{Owner: credential(s.Get("DATABASE_URL")), App: credential(s.Get("KV_APP_DATABASE_URL")),
		Monitor: credential(s.Get("POSTGRES_EXPORTER_DSN"))}
}

// Describe lists stack.env and every Variable with its default and value,
// for `bin/stack env`.
func (s *Settings) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s (an environment variable of the same name wins)\n", filepath.Join(s.Root, EnvFile))
	for _, a := range s.File {
		fmt.Fprintf(&b, "%-28s %-10s %s\n", a.Name, a.Value, mark(s.vars[a.Name], a.Value))
	}
	b.WriteString("\n# settings with their defaults (lab/native/settings.go)\n")
	for _, v := range Variables {
		fmt.Fprintf(&b, "%-28s default %s\n", v.Name, orNone(v.Default))
		if d, ok := privateDefaults[v.Name]; ok {
			fmt.Fprintf(&b, "%-28s private %s\n", "", orNone(d))
		}
		if d, ok := haDefaults[v.Name]; ok {
			fmt.Fprintf(&b, "%-28s ha      %s\n", "", orNone(d))
		}
		if cur := s.vars[v.Name]; cur != "" {
			fmt.Fprintf(&b, "%-28s now     %s\n", "", s.mask(cur))
		}
		if v.Doc != "" {
			fmt.Fprintf(&b, "%-28s         %s\n", "", v.Doc)
		}
	}
	var passed []string
	for name := range s.appEnv() {
		if _, ok := s.environ[name]; ok && !isOwn(name) {
			passed = append(passed, name)
		}
	}
	sort.Strings(passed)
	if len(passed) > 0 {
		fmt.Fprintf(&b, "\n# passed to the Go binaries from the environment: %s\n", strings.Join(passed, " "))
	}
	return b.String()
}

func isOwn(name string) bool {
	for _, v := range Variables {
		if v.Name == name {
			return true
		}
	}
	return false
}

func mark(now, file string) string {
	if now != file {
		return "now " + now
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Resolved is every setting (stack.env's and the Variables) with its
// value: a process given it as its environment loads the same settings.
func (s *Settings) Resolved() map[string]string {
	out := make(map[string]string, len(s.vars))
	for k, v := range s.vars {
		out[k] = v
	}
	return out
}

// Environ is the process environment with these variables set, for a
// command that must see the stack's settings (lab/scripts/services.sh).
func (s *Settings) Environ(names ...string) []string {
	env := os.Environ()
	for _, n := range names {
		env = append(env, n+"="+s.Get(n))
	}
	return env
}

// FindRoot is the repository's root: the directory holding stack.env, from
// the working directory upwards (the lab's commands run from the root or
// from lab/).
func FindRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "stack.env")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no stack.env here or above: run from the kvstack repository")
		}
		dir = parent
	}
}
