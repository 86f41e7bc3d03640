package native

import (
	"net"
	"path/filepath"
	"strings"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// ExporterKind is a kind of exporter; it is also the Prometheus job that
// scrapes it (observability/prometheus.yml).
type ExporterKind string

const (
	Mtail            ExporterKind = "mtail"             // nginx's access log → the edge's metrics
	NginxExporter    ExporterKind = "nginx-exporter"    // nginx's stub_status
	PostgresExporter ExporterKind = "postgres-exporter" // one PostgreSQL server
	RedisExporter    ExporterKind = "redis-exporter"    // one Redis server
)

// Exporter is a program that watches one part of the stack and serves what
// it sees as Prometheus metrics: it reads Target and listens on Listen.
//
// Exporters are data. The stack runs one of each kind (Exporters); the HA
// topology, with more nodes, watches each PostgreSQL and Redis node by
// listing one more Exporter of that kind with a name, a port and a target
// of its own, and a scrape target for it (RabbitMQ nodes serve their own
// metrics).
type Exporter struct {
	Kind ExporterKind
	// Name is the program's name (supervisord's, its log's): the kind's
	// own for the stack's one of each.
	Name   string
	Listen string // host:port of its /metrics
	// Target is what it reads: mtail an access log file, nginx-exporter the
	// stub_status URL, postgres-exporter a PostgreSQL URL (a DSN), and
	// redis-exporter redis://host:port (rediss:// over TLS).
	Target string
}

// Exporters are the stack's exporters, one of each kind, on the addresses
// Prometheus scrapes (the template variables *_EXPORTER_ADDR, MTAIL_ADDR);
// in the HA topology, one per PostgreSQL and Redis node.
func Exporters(s *Settings) []Exporter {
	if s.HA() {
		return haExporters(s)
	}
	return singleExporters(s)
}

func singleExporters(s *Settings) []Exporter {
	return []Exporter{
		{Kind: Mtail, Name: string(Mtail), Listen: s.Get("MTAIL_ADDR"), Target: s.Get("NGINX_ACCESS_LOG")},
		{Kind: NginxExporter, Name: string(NginxExporter), Listen: s.Get("NGINX_EXPORTER_ADDR"),
			Target: "http://" + s.Get("NGINX_STATUS_LISTEN") + "/stub_status"},
		{Kind: PostgresExporter, Name: string(PostgresExporter), Listen: s.Get("POSTGRES_EXPORTER_ADDR"),
			Target: s.Get("POSTGRES_EXPORTER_DSN")},
		{Kind: RedisExporter, Name: string(RedisExporter), Listen: s.Get("REDIS_EXPORTER_ADDR"),
			Target: redisURL(s.Get("REDIS_ADDR"))},
	}
}

// Command is the command line and environment that run the exporter, with
// the Debian packages' programs (lab/scripts/services.sh installs them:
// Debian 12's releases, older than the images compose and the chart run,
// deploy/k8s/VERSIONS.md); root
// is the repository, which holds mtail's program and the PostgreSQL
// exporter's queries. Each only reads what it watches.
func (e Exporter) Command(root string) (argv []string, env map[string]string) {
	switch e.Kind {
	case Mtail:
		host, port, _ := net.SplitHostPort(e.Listen)
		// Without the prog label, the series are named as the tests and
		// rules know them, whichever file holds the program.
		return []string{"mtail", "-progs", filepath.Join(root, MtailProgs), "-logs", e.Target,
			"-address", host, "-port", port, "-logtostderr", "-emit_prog_label=false"}, nil
	case NginxExporter:
		// Debian 12's 0.11 exits when stub_status does not answer as it
		// starts: it retries for a minute, so that a restart of both rides
		// out nginx's. Flags as --name=value, which both its Go flags and
		// the 1.x images' kingpin read (compose runs 1.x without the
		// retries, which 1.x no longer has: deploy/composetest).
		return []string{"prometheus-nginx-exporter", "--nginx.scrape-uri=" + e.Target, "--web.listen-address=" + e.Listen,
			"--nginx.retries=30", "--nginx.retry-interval=2s"}, nil
	case PostgresExporter:
		// The DSN goes in the environment, where the exporter reads it:
		// never on a command line that ps shows.
		return []string{"prometheus-postgres-exporter", "--web.listen-address=" + e.Listen,
				"--extend.query-path=" + filepath.Join(root, "observability", "postgres-exporter", "queries.yml"),
				"--log.level=warn"},
			map[string]string{"DATA_SOURCE_NAME": e.Target}
	case RedisExporter:
		return []string{"prometheus-redis-exporter", "-redis.addr", e.Target, "-web.listen-address", e.Listen}, nil
	}
	panic("native: no exporter kind " + string(e.Kind))
}

// Program is how the stack's supervisord runs the exporter. It is healthy
// when it serves /metrics: what it watches may be down (then it says so,
// pg_up 0, and ExporterDown fires), which is no reason to restart it.
func (e Exporter) Program(s *Settings) supervisor.Program {
	argv, env := e.Command(s.Root)
	p := supervisor.Program{
		Name: e.Name, Command: argv, Env: env, Dir: s.Root, User: s.ProcessUser(), Log: s.LogFile(e.Name), StopWait: s.StopTimeout(),
		Priority: 30, Addr: e.Listen, Health: supervisor.HTTPProbe{Addr: e.Listen, Path: "/metrics"},
	}
	if e.Kind == NginxExporter {
		p.Priority = 40 // once nginx (30) answers: see Command
	}
	if e.Kind == RedisExporter && s.Get("KV_REDIS_EXPORTER_USERNAME") != "" {
		// Its ACL user, in the environment (never on a command line).
		p.Env = map[string]string{"REDIS_USER": s.Get("KV_REDIS_EXPORTER_USERNAME"), "REDIS_PASSWORD": s.Get("KV_REDIS_EXPORTER_PASSWORD")}
	}
	if e.Kind == RedisExporter && strings.HasPrefix(e.Target, "rediss://") {
		if p.Env == nil {
			p.Env = map[string]string{}
		}
		// The CA the server's certificate must chain to.
		p.Env["REDIS_EXPORTER_TLS_CA_CERT_FILE"] = s.Get("REDIS_TLS_CA_FILE")
	}
	return p
}

// redisURL is a REDIS_ADDR address as a URL: rediss:// kept, host:port
// made redis://host:port.
func redisURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "redis://" + addr
}
