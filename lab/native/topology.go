package native

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// Process names of the native topology, in start order; docker-compose.yml
// has a service of each name (deploy/composetest checks it). The exporters
// are those of Exporters.
var ProcessNames = []string{"jaeger", "api1", "api2", "consumer", "nginx",
	"mtail", "nginx-exporter", "postgres-exporter", "redis-exporter", "alertmanager", "prometheus"}

// Processes is the native topology: every process of kvstack's stack, on
// the ports of s, the exporters that watch nginx, PostgreSQL and Redis
// among them. The shared PostgreSQL, Redis and RabbitMQ are not:
// lab/scripts/services.sh starts those when missing, and nothing here stops
// them (KV_ENGINES=private adds the stack's own, package engine).
//
// In the HA topology (KV_TOPOLOGY=ha) they are those of HAProcessNames:
// its engines' nodes (each PostgreSQL node's Patroni) and etcd are not
// among them either (package engines adds them).
func Processes(s *Settings) []supervisor.Program {
	names := ProcessNames
	if s.HA() {
		names = haProcessNames()
	}
	out := make([]supervisor.Program, 0, len(names))
	for _, name := range names {
		out = append(out, process(s, name))
	}
	return out
}

// Select keeps the named programs of a topology, in its order.
func Select(programs []supervisor.Program, names ...string) []supervisor.Program {
	var out []supervisor.Program
	for _, p := range programs {
		for _, n := range names {
			if p.Name == n {
				out = append(out, p)
			}
		}
	}
	return out
}

func process(s *Settings, name string) supervisor.Program {
	p := supervisor.Program{
		Name: name, Dir: s.Root, Log: s.LogFile(name), StopWait: s.StopTimeout(),
	}
	switch name {
	case "api1", "api2":
		addr := s.Addr("KV_" + strings.ToUpper(name) + "_PORT")
		p.Command, p.Binary = []string{filepath.Join(s.BinDir, "api")}, filepath.Join(s.BinDir, "api")
		p.Env = s.appEnv()
		p.Env["KV_HTTP_ADDR"], p.Env["KV_INSTANCE_ID"] = addr, name
		p.Env["RABBITMQ_URL"] = s.Get("KV_API_RABBITMQ_URL")
		p.Env["KV_ADMIN_ADDR"] = s.Get(strings.ToUpper(name) + "_ADMIN_ADDR")
		// Two replicas share this machine's cores with everything else:
		// one P each spares the Go schedulers' spinning and wake-ups
		// (lab/bench/NOTES.md: +25 % GET hits on 2 cores).
		p.Env["GOMAXPROCS"] = s.Get("KV_API_GOMAXPROCS")
		p.User = s.ProcessUser()
		p.Priority, p.Addr, p.Health = 20, addr, supervisor.HTTPProbe{Addr: addr, Path: "/healthz"}
	case "consumer":
		return Consumer(s, 1)
	case "consumer2":
		return Consumer(s, 2)
	case "nginx":
		dir := filepath.Join(s.Dir, "nginx")
		p.Command = []string{"nginx", "-p", dir + "/", "-c", filepath.Join(s.ConfigDir(), "nginx.conf"),
			"-e", s.Get("NGINX_ERROR_LOG"), "-g", "daemon off; pid " + filepath.Join(dir, "nginx.pid") + ";"}
		p.Priority, p.Addr = 30, s.Get("NGINX_LISTEN")
		p.Health = edgeProbe{s}
		// Master and workers alike: an unprivileged master cannot switch
		// its workers to another user (nginx ignores `user`).
		p.User = s.ProcessUser()
	case "alertmanager":
		p.Addr = s.Get("ALERTMANAGER_ADDR")
		p.Command = []string{"prometheus-alertmanager", "--config.file=" + filepath.Join(s.ConfigDir(), "alertmanager.yml"),
			"--storage.path=" + filepath.Join(s.Dir, "alertmanager"), "--web.listen-address=" + p.Addr,
			"--cluster.listen-address=", "--web.external-url=http://" + p.Addr}
		p.User = s.ProcessUser()
		p.Priority, p.Health = 30, supervisor.HTTPProbe{Addr: p.Addr, Path: "/-/ready"}
	case "prometheus":
		p.Addr = s.Get("PROMETHEUS_ADDR")
		p.Command = []string{"prometheus", "--config.file=" + filepath.Join(s.ConfigDir(), "prometheus.yml"),
			"--storage.tsdb.path=" + filepath.Join(s.Dir, "prometheus"), "--storage.tsdb.retention.time=2d",
			// No --web.enable-lifecycle: any local process (or a web page,
			// by CSRF) could POST /-/quit. The stack reloads it by SIGHUP.
			"--web.listen-address=" + p.Addr, "--enable-feature=exemplar-storage"}
		p.User = s.ProcessUser()
		p.Priority, p.Health = 30, supervisor.HTTPProbe{Addr: p.Addr, Path: "/-/ready"}
	case "jaeger":
		// Jaeger reads its ports from observability/jaeger.yaml's ${env:…}.
		p.Command = []string{filepath.Join(s.BinDir, "jaeger"), "--config", filepath.Join(s.Root, "observability", "jaeger.yaml")}
		p.Env = map[string]string{
			"JAEGER_LISTEN_HOST":     s.Host(),
			"JAEGER_UI_PORT":         s.Get("KV_JAEGER_UI_PORT"),
			"JAEGER_OTLP_GRPC_PORT":  s.Get("KV_JAEGER_OTLP_GRPC_PORT"),
			"JAEGER_OTLP_HTTP_PORT":  s.Get("KV_JAEGER_OTLP_HTTP_PORT"),
			"JAEGER_QUERY_GRPC_PORT": s.Get("KV_JAEGER_QUERY_GRPC_PORT"),
			"JAEGER_HEALTH_PORT":     s.Get("KV_JAEGER_HEALTH_PORT"),
			// Its spanmetrics, and the Prometheus it reads them back from
			// (the Monitor tab).
			"JAEGER_METRICS_PORT":   s.Get("KV_JAEGER_METRICS_PORT"),
			"JAEGER_PROMETHEUS_URL": "http://" + s.Get("PROMETHEUS_ADDR"),
			"OTEL_TRACES_EXPORTER":  "none", // Jaeger does not trace itself into itself
		}
		p.Addr = s.Addr("KV_JAEGER_UI_PORT")
		p.User = s.ProcessUser()
		p.Priority, p.Health = 10, supervisor.HTTPProbe{Addr: p.Addr, Path: "/api/services"}
	default:
		for _, e := range Exporters(s) {
			if e.Name == name {
				return e.Program(s)
			}
		}
		panic("native: no process " + name)
	}
	return p
}

// ProcessUser is the system user every process of the topology runs as
// (KV_PROCESS_USER): the API replicas, the consumers, the exporters,
// nginx (master and workers), Prometheus, Alertmanager and Jaeger; none of
// them needs root. The engines run as their own users (package engines),
// and so does the backup scheduler: as postgres, the owner of the
// pgBackRest repository (docs/SECURITY.md). WriteConfigs gives this user
// the directories and files they write.
//
// It is "" (root, under a root supervisord) only when KV_PROCESS_USER is
// root, said on purpose; the stack then says so at every start and in
// make status (RootWarning). A checkout that user cannot reach is refused
// (reachable), never a silent fall back to root.
func (s *Settings) ProcessUser() string {
	if u := s.Get("KV_PROCESS_USER"); u != "root" {
		return u
	}
	return ""
}

// RootWarning is what the stack prints at start and make status reports
// when it runs the topology's processes as root (KV_PROCESS_USER=root,
// under a root caller), "" otherwise.
func RootWarning(s *Settings) string {
	if os.Geteuid() != 0 || s.ProcessUser() != "" {
		return ""
	}
	return "WARNING: KV_PROCESS_USER=root: the API replicas, the consumers, the exporters, nginx's master, " +
		"Prometheus, Alertmanager and Jaeger run as ROOT, on purpose; unset it to run them as kvstack"
}

// ConsumerAdminAddr is the admin listener of consumer number n (see
// Consumer): CONSUMER_ADMIN_ADDR, then the next ports.
func ConsumerAdminAddr(s *Settings, n int) string {
	host, p, _ := net.SplitHostPort(s.Get("CONSUMER_ADMIN_ADDR"))
	port, _ := strconv.Atoi(p)
	return net.JoinHostPort(host, strconv.Itoa(port+n-1))
}

// Consumer is consumer number n: the topology's consumer is 1 (on
// KV_CONSUMER_PORT); the HA topology runs 2 too, and the chaos campaign
// adds 2 and 3, on the next ports.
func Consumer(s *Settings, n int) supervisor.Program {
	port, _ := strconv.Atoi(s.Get("KV_CONSUMER_PORT"))
	addr := net.JoinHostPort(s.Host(), strconv.Itoa(port+n-1))
	name := "consumer"
	if n > 1 {
		name = fmt.Sprintf("consumer%d", n)
	}
	env := s.appEnv()
	env["KV_CONSUMER_ADDR"], env["KV_INSTANCE_ID"] = addr, fmt.Sprintf("consumer%d", n)
	env["KV_ADMIN_ADDR"] = ConsumerAdminAddr(s, n)
	env["RABBITMQ_URL"] = s.Get("KV_CONSUMER_RABBITMQ_URL")
	return supervisor.Program{
		Name: name, Dir: s.Root, Log: s.LogFile(name), StopWait: s.StopTimeout(),
		Command: []string{filepath.Join(s.BinDir, "consumer")}, Binary: filepath.Join(s.BinDir, "consumer"),
		Env: env, User: s.ProcessUser(), Priority: 20, Addr: addr, Health: supervisor.HTTPProbe{Addr: addr, Path: "/healthz"},
	}
}

// edgeProbe is nginx's health: GET /healthz over TLS, trusting the
// stack's CA (read at each check: the first render makes it).
type edgeProbe struct{ s *Settings }

func (p edgeProbe) Check(ctx context.Context) error {
	cfg, err := EdgeTLS(p.s)
	if err != nil {
		return err
	}
	return supervisor.HTTPProbe{Addr: p.s.Get("NGINX_LISTEN"), Path: "/healthz", TLS: cfg}.Check(ctx)
}

func (p edgeProbe) String() string { return EdgeURL(p.s) + "/healthz" }
