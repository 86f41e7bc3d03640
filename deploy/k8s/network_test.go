package k8s

import (
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The parties outside kvstack's namespace, as their usual installs label
// them (the chart's defaults): the platform's Prometheus and Grafana
// (kube-prometheus-stack), KEDA's operator and its metrics server, the
// Gateway's proxies (Envoy Gateway's) and its controller beside them, the operators, DNS (kube-dns, and NodeLocal DNSCache's
// address on every node, 169.254.20.10, which the pods query when the
// cluster runs it), and strangers. Each namespace that a policy opens to a
// party holds another pod too, which the policy must keep out.
const nodeLocalDNS = "169.254.20.10"

func platformPods() map[string]pod {
	return map[string]pod{
		"kube-dns":          {ns: "kube-system", labels: map[string]string{"k8s-app": "kube-dns"}, ports: map[string]int32{"dns-tcp": 53}},
		"node-local-dns":    {ip: nodeLocalDNS, ports: map[string]int32{"dns-tcp": 53}},
		"prometheus":        {ns: "monitoring", labels: map[string]string{"app.kubernetes.io/name": "prometheus"}, ports: map[string]int32{"http-web": 9090}},
		"grafana":           {ns: "monitoring", labels: map[string]string{"app.kubernetes.io/name": "grafana"}, ports: map[string]int32{"grafana": 3000}},
		"keda":              {ns: "keda", labels: map[string]string{"app": "keda-operator", "app.kubernetes.io/name": "keda-operator"}},
		"keda-metrics":      {ns: "keda", labels: map[string]string{"app": "keda-operator-metrics-apiserver", "app.kubernetes.io/name": "keda-operator-metrics-apiserver"}},
		"edge":              {ns: "envoy-gateway-system", labels: map[string]string{"app.kubernetes.io/name": "envoy"}, ports: map[string]int32{"metrics": 19001}},
		"edge-neighbour":    {ns: "envoy-gateway-system", labels: map[string]string{"app.kubernetes.io/name": "envoy-gateway"}, ports: map[string]int32{"grpc": 18000}},
		"rabbitmq-operator": {ns: "rabbitmq-system", labels: map[string]string{"app.kubernetes.io/name": "rabbitmq-cluster-operator"}},
		// The messaging-topology operator (Users, Permissions) beside it,
		// through the management API.
		"topology-operator": {ns: "rabbitmq-system", labels: map[string]string{"app.kubernetes.io/name": "messaging-topology-operator"}},
		"cnpg-operator":     {ns: "cnpg-system", labels: map[string]string{"app.kubernetes.io/name": "cloudnative-pg"}},
		"redis-operator":    {ns: "ot-operators", labels: map[string]string{"name": "redis-operator"}},
		"stranger":          {ns: "default", labels: map[string]string{"app": "stranger"}, ports: map[string]int32{"http": 8080}},
	}
}

// flow is one connection the system needs; port 0 is any port.
type flow struct {
	from, to string
	port     int32
}

// endpoints are every pod of the build and the platform, by name: the
// Deployments' by their name, the engines' as <kind>:<resource>, and a
// neighbour in kvstack's namespace that nothing needs.
func (m *manifests) endpoints() map[string]pod {
	ns := m.namespace()
	eps := platformPods()
	eps["neighbour"] = pod{ns: ns, labels: map[string]string{"app": "neighbour"}, ports: map[string]int32{"http": 8080}}
	for _, d := range m.deployments {
		p := podOf(d)
		p.ns = ns
		eps[d.Name] = p
	}
	for _, j := range m.jobs {
		eps[j.Name] = pod{ns: ns, labels: j.Spec.Template.Labels}
	}
	for engine, e := range m.external {
		eps["external:"+engine] = pod{ip: e.ip, ports: map[string]int32{engine: e.port}}
	}
	for _, r := range m.rabbitmqs {
		eps["rabbitmq:"+r.Name] = pod{ns: ns, labels: map[string]string{rabbitmqPodLabel: r.Name},
			ports: map[string]int32{"amqp": rabbitmqAMQPPort, "amqps": rabbitmqAMQPSPort, "prometheus": rabbitmqMetricsPort, "management": 15672, "epmd": 4369, "cluster-rpc": 25672}}
	}
	for _, pg := range m.postgreses {
		eps["postgres:"+pg.Name] = pod{ns: ns, labels: map[string]string{postgresPodLabel: pg.Name},
			ports: map[string]int32{"postgresql": postgresPort, postgresMetricsPort: postgresMetricsNum, "status": 8000}}
	}
	redisPod := func(app string) pod {
		return pod{ns: ns, labels: map[string]string{redisPodLabel: app}, ports: map[string]int32{"redis-client": redisDefaultPort, redisExporterPort: redisExporterDefault, "redis-bus": 16379}}
	}
	for _, r := range m.redises {
		eps["redis:"+r.Name] = redisPod(r.Name)
	}
	for _, r := range m.redisClusters {
		eps["redis:"+r.Name+"-leader"] = redisPod(r.Name + "-leader")
		eps["redis:"+r.Name+"-follower"] = redisPod(r.Name + "-follower")
	}
	return eps
}

// neededFlows lists every connection kvstack needs, on the ports of
// stack.env and the operators'. Nothing else may be allowed.
func (m *manifests) neededFlows(t testing.TB, s *sources) []flow {
	var f []flow
	eps := m.endpoints()
	var redis []string
	for name := range eps {
		if strings.HasPrefix(name, "redis:") {
			redis = append(redis, name)
		}
	}
	ext := func(engine string) (flow, bool) {
		e, ok := m.external[engine]
		return flow{to: "external:" + engine, port: e.port}, ok
	}
	// The migrations: PostgreSQL and RabbitMQ only.
	for _, j := range m.jobs {
		f = append(f, flow{j.Name, "kube-dns", 53}, flow{j.Name, "node-local-dns", 53})
		for _, pg := range m.postgreses {
			f = append(f, flow{j.Name, "postgres:" + pg.Name, s.port(t, "PGPORT")})
		}
		for _, r := range m.rabbitmqs {
			f = append(f, flow{j.Name, "rabbitmq:" + r.Name, rabbitmqClientPort(t, r, s)})
		}
		for _, engine := range []string{"postgresql", "rabbitmq"} {
			if e, ok := ext(engine); ok {
				e.from = j.Name
				f = append(f, e)
			}
		}
	}
	clients := []string{"kvstack-api", "kvstack-consumer"}
	for _, c := range clients {
		f = append(f, flow{c, "kube-dns", 53}, flow{c, "node-local-dns", 53})
		for _, pg := range m.postgreses {
			f = append(f, flow{c, "postgres:" + pg.Name, s.port(t, "PGPORT")})
		}
		for _, r := range m.rabbitmqs {
			f = append(f, flow{c, "rabbitmq:" + r.Name, rabbitmqClientPort(t, r, s)})
		}
		for _, r := range redis {
			f = append(f, flow{c, r, s.port(t, "REDIS_PORT")})
		}
		for _, engine := range []string{"postgresql", "rabbitmq", "redis"} {
			if e, ok := ext(engine); ok {
				e.from = c
				f = append(f, e)
			}
		}
		f = append(f, flow{c, "kvstack-jaeger", s.port(t, "KV_JAEGER_OTLP_HTTP_PORT")})
		// Prometheus scrapes /metrics on the admin port, the only one
		// that serves it and /debug/pprof/.
		metrics, ok := eps[c].ports["admin"]
		if !ok {
			t.Fatalf("%s has no container port named admin", c)
		}
		f = append(f, flow{"prometheus", c, metrics})
	}
	f = append(f, flow{"edge", "kvstack-api", s.port(t, "KV_API1_PORT")})
	// Jaeger: the UI and query API for Grafana, the spanmetrics for
	// Prometheus, which its Monitor tab reads back.
	jaeger := eps["kvstack-jaeger"]
	f = append(f,
		flow{"grafana", "kvstack-jaeger", jaeger.ports["query"]},
		flow{"prometheus", "kvstack-jaeger", jaeger.ports["metrics"]},
		flow{"kvstack-jaeger", "prometheus", 9090},
		flow{"kvstack-jaeger", "kube-dns", 53}, flow{"kvstack-jaeger", "node-local-dns", 53})
	// The PostgreSQL exporter reads the primary; Prometheus scrapes it.
	exp := "kvstack-postgres-exporter"
	f = append(f, flow{exp, "kube-dns", 53}, flow{exp, "node-local-dns", 53},
		flow{"prometheus", exp, eps[exp].ports["metrics"]})
	for _, pg := range m.postgreses {
		f = append(f, flow{exp, "postgres:" + pg.Name, s.port(t, "PGPORT")})
	}
	if e, ok := ext("postgresql"); ok && m.deployment(exp) != nil {
		e.from = exp
		f = append(f, e)
	}
	// The engines: their peers and their operator on any port (replication,
	// clustering, the instance managers), Prometheus on their exporters,
	// KEDA on the broker's queues.
	for _, pg := range m.postgreses {
		e := "postgres:" + pg.Name
		f = append(f, flow{e, e, 0}, flow{"cnpg-operator", e, 0}, flow{"prometheus", e, postgresMetricsNum})
	}
	for _, r := range m.rabbitmqs {
		e := "rabbitmq:" + r.Name
		f = append(f, flow{e, e, 0}, flow{"rabbitmq-operator", e, 0}, flow{"topology-operator", e, 0}, flow{"prometheus", e, s.port(t, "RABBITMQ_METRICS_PORT")},
			flow{"keda", e, rabbitmqClientPort(t, r, s)})
	}
	for _, a := range redis {
		for _, b := range redis {
			f = append(f, flow{a, b, 0})
		}
		f = append(f, flow{"redis-operator", a, 0}, flow{"prometheus", a, redisExporterDefault})
	}
	return f
}

// checkNetwork: the NetworkPolicies allow exactly the flows kvstack
// needs: every connection into kvstack's namespace, or out of one of
// kvstack's own pods, on every port the target serves (and 53, 443 and
// one nobody serves), is allowed when a needed flow names it, and denied
// otherwise. The engines' and other pods' way out is theirs: the
// operators' instance managers call the Kubernetes API, whose address
// differs from cluster to cluster. Every pod of kvstack's own is isolated
// both ways.
func checkNetwork(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	ns := m.namespace()
	ours := map[string]map[string]string{}
	for _, d := range m.deployments {
		ours[d.Name] = d.Spec.Template.Labels
	}
	for _, j := range m.jobs {
		ours[j.Name] = j.Spec.Template.Labels
	}
	for name, lbls := range ours {
		in, out := false, false
		for _, np := range m.netpols {
			if selects(&np.Spec.PodSelector, lbls) {
				in = in || hasType(np, "Ingress")
				out = out || hasType(np, "Egress")
			}
		}
		if !in || !out {
			p.add("pods of %s are not isolated both ways (ingress %v, egress %v)", name, in, out)
		}
	}
	eps := m.endpoints()
	needed := map[flow]bool{}
	for _, f := range m.neededFlows(t, s) {
		if _, ok := eps[f.from]; !ok {
			p.add("flow %v: no endpoint %s", f, f.from)
		}
		if _, ok := eps[f.to]; !ok {
			p.add("flow %v: no endpoint %s", f, f.to)
		}
		needed[f] = true
	}
	names := slices.Sorted(maps.Keys(eps))
	for _, a := range names {
		for _, b := range names {
			from, to := eps[a], eps[b]
			if to.ns != ns && m.deployment(a) == nil && m.job(a) == nil {
				continue
			}
			ports := map[int32]bool{53: true, 443: true, 12345: true}
			for _, port := range to.ports {
				ports[port] = true
			}
			for _, port := range slices.Sorted(maps.Keys(ports)) {
				got := allowed(m.netpols, from, to, port)
				want := needed[flow{a, b, port}] || needed[flow{a, b, 0}]
				switch {
				case got && !want:
					p.add("%s → %s:%d is allowed, and no flow needs it", a, b, port)
				case want && !got:
					p.add("%s → %s:%d is needed, and the policies deny it", a, b, port)
				}
			}
		}
	}
	return p
}

// String shows a flow in problems.
func (f flow) String() string { return fmt.Sprintf("%s → %s:%d", f.from, f.to, f.port) }

// externalEngine is a managed engine outside the cluster: an address in
// the block the values give, on its port.
type externalEngine struct {
	ip   string
	port int32
}

// externalEngines reads a variant's values file: the engines it sets to
// external, each at the first address of its block.
func externalEngines(t testing.TB, variant string) map[string]externalEngine {
	t.Helper()
	var v map[string]struct {
		Mode     string `json:"mode"`
		External struct {
			CIDR string `json:"cidr"`
			Port int32  `json:"port"`
		} `json:"external"`
	}
	data, err := os.ReadFile(ValuesFile(variant))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	out := map[string]externalEngine{}
	for _, engine := range []string{"postgresql", "redis", "rabbitmq"} {
		e := v[engine]
		if e.Mode != "external" {
			continue
		}
		ip, _, err := net.ParseCIDR(e.External.CIDR)
		if err != nil {
			t.Fatalf("values/%s.yaml: %s.external.cidr %q: %v", variant, engine, e.External.CIDR, err)
		}
		ip[len(ip)-1]++
		out[engine] = externalEngine{ip.String(), e.External.Port}
	}
	return out
}

// rabbitmqClientPort is the port the clients of an in-cluster RabbitMQ
// reach: AMQPS when it serves TLS, else stack.env's AMQP port.
func rabbitmqClientPort(t testing.TB, r *RabbitmqCluster, s *sources) int32 {
	if r.Spec.TLS != nil && r.Spec.TLS.SecretName != "" {
		return rabbitmqAMQPSPort
	}
	return s.port(t, "RABBITMQ_PORT")
}
