package native

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// The HA topology (KV_TOPOLOGY=ha, make up-ha) has these many nodes of
// each engine; stack.env gives each node its ports.
const (
	HARabbitMQNodes = 3
	HARedisNodes    = 6
	HAPostgresNodes = 2
)

// redisBusOffset is how much higher than its port a Redis Cluster node's
// cluster bus listens (Redis' default).
const redisBusOffset = 10000

// Node is one node of an engine's cluster in the HA topology.
type Node struct {
	// Name is its program's name (rabbitmq1, redis4, postgres2), the
	// label `node` of its scrape target, and its data directory's name.
	Name string
	Port int
	// DistPort and MetricsPort are a RabbitMQ node's Erlang distribution
	// and rabbitmq_prometheus ports.
	DistPort, MetricsPort int
	// ExporterPort is where a PostgreSQL or Redis node's exporter listens.
	ExporterPort int
	// RestPort is a PostgreSQL node's Patroni REST API (/primary,
	// /cluster, /metrics); PeerPort is etcd's peer listener.
	RestPort, PeerPort int
}

// HANodes are the HA topology's clusters, and the etcd the PostgreSQL
// nodes' Patroni keep their leader key in.
type HANodes struct {
	RabbitMQ, Redis, Postgres []Node
	Etcd                      Node
}

// HANodes lists every node of the HA topology with the ports of stack.env
// (KV_HA_<ENGINE><N>_…_PORT).
func (s *Settings) HANodes() HANodes {
	var n HANodes
	for i := 1; i <= HARabbitMQNodes; i++ {
		v := fmt.Sprintf("KV_HA_RABBITMQ%d_", i)
		n.RabbitMQ = append(n.RabbitMQ, Node{Name: fmt.Sprintf("rabbitmq%d", i), Port: s.port(v + "PORT"),
			DistPort: s.port(v + "DIST_PORT"), MetricsPort: s.port(v + "METRICS_PORT")})
	}
	for i := 1; i <= HARedisNodes; i++ {
		v := fmt.Sprintf("KV_HA_REDIS%d_", i)
		n.Redis = append(n.Redis, Node{Name: fmt.Sprintf("redis%d", i), Port: s.port(v + "PORT"), ExporterPort: s.port(v + "EXPORTER_PORT")})
	}
	for i := 1; i <= HAPostgresNodes; i++ {
		v := fmt.Sprintf("KV_HA_POSTGRES%d_", i)
		n.Postgres = append(n.Postgres, Node{Name: fmt.Sprintf("postgres%d", i), Port: s.port(v + "PORT"), ExporterPort: s.port(v + "EXPORTER_PORT"),
			RestPort: s.port(fmt.Sprintf("KV_HA_PATRONI%d_PORT", i))})
	}
	n.Etcd = Node{Name: "etcd", Port: s.port("KV_HA_ETCD_PORT"), PeerPort: s.port("KV_HA_ETCD_PEER_PORT")}
	return n
}

// Names are the programs' names of every node of the three engines,
// RabbitMQ's first (a PostgreSQL node's program is its Patroni; etcd is not
// among them).
func (n HANodes) Names() []string {
	var names []string
	for _, group := range [][]Node{n.RabbitMQ, n.Redis, n.Postgres} {
		for _, x := range group {
			names = append(names, x.Name)
		}
	}
	return names
}

// port is a stack.env port as a number (Load checked it is one).
func (s *Settings) port(name string) int {
	n, _ := strconv.Atoi(s.Get(name))
	return n
}

func (s *Settings) hostPort(port int) string { return net.JoinHostPort(s.Host(), strconv.Itoa(port)) }

// haProcessNames are the HA topology's processes beside its engines' nodes
// and etcd (which package engines adds): those of the
// single-node topology, a second consumer, and an exporter per PostgreSQL
// and Redis node instead of one.
func haProcessNames() []string {
	names := []string{"jaeger", "api1", "api2", "consumer", "consumer2", "nginx", "mtail", "nginx-exporter"}
	for i := 1; i <= HAPostgresNodes; i++ {
		names = append(names, fmt.Sprintf("%s%d", PostgresExporter, i))
	}
	for i := 1; i <= HARedisNodes; i++ {
		names = append(names, fmt.Sprintf("%s%d", RedisExporter, i))
	}
	return append(names, "alertmanager", "prometheus")
}

// haExporters are an exporter per PostgreSQL and Redis node (named after
// its kind and the node's number), beside the edge's.
func haExporters(s *Settings) []Exporter {
	out := singleExporters(s)[:2] // mtail, nginx-exporter
	nodes := s.HANodes()
	for i, n := range nodes.Postgres {
		out = append(out, Exporter{Kind: PostgresExporter, Name: fmt.Sprintf("%s%d", PostgresExporter, i+1),
			Listen: s.hostPort(n.ExporterPort), Target: nodeDSN(s.Get("POSTGRES_EXPORTER_DSN"), engineAddr(n.Port))})
	}
	scheme := "redis://"
	if strings.HasPrefix(s.Get("REDIS_ADDR"), "rediss://") {
		scheme = "rediss://" // as the app reaches the nodes
	}
	for i, n := range nodes.Redis {
		out = append(out, Exporter{Kind: RedisExporter, Name: fmt.Sprintf("%s%d", RedisExporter, i+1),
			Listen: s.hostPort(n.ExporterPort), Target: scheme + engineAddr(n.Port)})
	}
	return out
}

// engineAddr is a node's address: the HA topology's engines listen on
// 127.0.0.1, which their certificates name, whatever KV_BIND_HOST says.
func engineAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// nodeDSN is a PostgreSQL URL addressing one node: its host list replaced
// by addr, and no target_session_attrs (the exporter of a standby reads
// the standby).
func nodeDSN(dsn, addr string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn // not a URL (key=value form): the caller's, as given
	}
	u.Host = addr
	q := u.Query()
	q.Del("target_session_attrs")
	u.RawQuery = q.Encode()
	return u.String()
}

// haScrapeTargets are the targets that stand, in the HA topology's
// prometheus.yml, for a template variable naming one: both consumers, and
// every node of every engine (labelled `node`, its program's name; an
// exporter's target is labelled with the node it watches).
func haScrapeTargets(s *Settings) map[string][]ScrapeTarget {
	nodes := s.HANodes()
	groups := map[string][]ScrapeTarget{
		"CONSUMER_ADMIN_ADDR": {
			{Addr: ConsumerAdminAddr(s, 1), Labels: []Label{{"instance_id", "consumer1"}}},
			{Addr: ConsumerAdminAddr(s, 2), Labels: []Label{{"instance_id", "consumer2"}}},
		},
	}
	for _, n := range nodes.RabbitMQ {
		groups["RABBITMQ_METRICS_ADDR"] = append(groups["RABBITMQ_METRICS_ADDR"],
			ScrapeTarget{Addr: s.hostPort(n.MetricsPort), Labels: []Label{{"node", n.Name}}})
	}
	for _, n := range nodes.Postgres {
		groups["POSTGRES_EXPORTER_ADDR"] = append(groups["POSTGRES_EXPORTER_ADDR"],
			ScrapeTarget{Addr: s.hostPort(n.ExporterPort), Labels: []Label{{"node", n.Name}}})
	}
	for _, n := range nodes.Redis {
		groups["REDIS_EXPORTER_ADDR"] = append(groups["REDIS_EXPORTER_ADDR"],
			ScrapeTarget{Addr: s.hostPort(n.ExporterPort), Labels: []Label{{"node", n.Name}}})
	}
	return groups
}

// haPatroniJob is the scrape job the HA topology's prometheus.yml adds to
// the template's: each PostgreSQL node's Patroni (its REST API's
// /metrics: patroni_primary, patroni_sync_standby…), labelled `node`. The
// template has no such job: the single-node topology, compose and k8s run
// no Patroni. The REST API serves TLS alone with PostgreSQL's
// certificate (engines.ForHA), which Prometheus verifies against the
// stack's CA.
func haPatroniJob(s *Settings) string {
	var b strings.Builder
	b.WriteString("\n  # The HA topology's (lab/native): each PostgreSQL node's Patroni, over TLS.\n  - job_name: patroni\n    scheme: https\n")
	fmt.Fprintf(&b, "    tls_config:\n      ca_file: %q\n    static_configs:\n", s.Get("KV_TLS_CA"))
	for _, n := range s.HANodes().Postgres {
		fmt.Fprintf(&b, "      - targets: [%q]\n        labels: { node: %s }\n", s.hostPort(n.RestPort), n.Name)
	}
	return b.String()
}
