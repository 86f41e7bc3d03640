package k8s

import (
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A check compares an overlay's objects with the repository's sources and
// says what disagrees. Every check runs on every overlay (TestCrossChecks),
// and each is shown failing on a broken copy (TestChecksCatch).
type check func(t testing.TB, m *manifests, s *sources) problems

// spanFlush is the time a stopping binary gives its last spans
// (docs/DESIGN.md); routingForgets the time kube-proxy and the Gateway take
// to stop sending requests to a pod being deleted.
const (
	spanFlush      = 5 * time.Second
	routingForgets = 5 * time.Second
)

var checks = map[string]check{
	"env":        checkEnv,
	"ports":      checkPorts,
	"probes":     checkProbes,
	"scaling":    checkScaling,
	"engines":    checkEngines,
	"edge":       checkEdge,
	"monitoring": checkMonitoring,
	"images":     checkImages,
	"secrets":    checkSecrets,
	"network":    checkNetwork,
	"capacity":   checkCapacity,
	"redis":      checkRedisMemory,
	"routing":    checkAlertRouting,
	"versions":   checkVersions,
	"postgres":   checkPostgresMonitoring,
	"migrations": checkMigrations,
	"backups":    checkBackups,
	"enginetls":  checkEngineTLS,
	"privilege":  checkPrivilege,
}

func TestCrossChecks(t *testing.T) {
	for _, o := range variants {
		for name, c := range checks {
			t.Run(o+"/"+name, func(t *testing.T) {
				for _, p := range c(t, mustBuild(t, o), mustSources(t)) {
					t.Error(p)
				}
			})
		}
	}
}

// tracing are the binaries that export traces, hence read the standard
// OpenTelemetry SDK variables.
var tracing = []string{"api", "consumer"}

// otelVars are the OpenTelemetry SDK variables kvstack documents.
var otelVars = regexp.MustCompile(`^OTEL_(SERVICE_NAME|RESOURCE_ATTRIBUTES|PROPAGATORS|TRACES_EXPORTER|TRACES_SAMPLER|TRACES_SAMPLER_ARG|EXPORTER_OTLP_(TRACES_)?(ENDPOINT|PROTOCOL|HEADERS|TIMEOUT|INSECURE)|BSP_[A-Z_]+)$`)

// goRuntime are the Go runtime's own variables, read by every binary.
var goRuntime = []string{"GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG"}

// Every variable a container sets is one its binary reads; every variable
// whose default points at the host itself (127.0.0.1, localhost, the guest
// account) is set, since a pod is not that host; no value holds a password.
func checkEnv(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	for _, k := range m.kvContainers() {
		reads, ok := s.env[k.bin]
		if !ok {
			p.add("%s runs /kvstack/%s, not a binary of cmd/ (%v)", k, k.bin, binaries)
			continue
		}
		seen := map[string]bool{}
		for _, e := range k.c.Env {
			if seen[e.Name] {
				p.add("%s sets %s twice", k, e.Name)
			}
			seen[e.Name] = true
			_, read := reads[e.Name]
			switch {
			case read, slices.Contains(goRuntime, e.Name):
			case otelVars.MatchString(e.Name) && slices.Contains(tracing, k.bin):
			default:
				p.add("%s sets %s, which %s does not read (go run ./cmd/%s -env)", k, e.Name, k.bin, k.bin)
			}
			if e.ValueFrom == nil && regexp.MustCompile(`://[^/@\s]*:[^/@\s]*@`).MatchString(e.Value) {
				p.add("%s: %s holds a password in clear; take it from a Secret", k, e.Name)
			}
		}
		for name, def := range reads {
			if strings.Contains(def, "127.0.0.1") || strings.Contains(def, "localhost") || strings.Contains(def, "guest:guest") {
				if !seen[name] {
					p.add("%s leaves %s at its default %q, which is the pod itself", k, name, def)
				}
			}
		}
		if slices.Contains(tracing, k.bin) && !k.init && !seen["OTEL_EXPORTER_OTLP_ENDPOINT"] {
			p.add("%s leaves OTEL_EXPORTER_OTLP_ENDPOINT at localhost:4318", k)
		}
	}
	return p
}

// The binaries listen on, and are reached at, the ports of stack.env, as in
// the native stack and compose; each address names a Service that exists
// (or that its operator makes) on that port.
func checkPorts(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	listen := map[string]struct{ addrVar, portVar string }{
		"api":      {"KV_HTTP_ADDR", "KV_API1_PORT"},
		"consumer": {"KV_CONSUMER_ADDR", "KV_CONSUMER_PORT"},
	}
	for bin, l := range listen {
		k := m.mainContainer(bin)
		if k == nil {
			p.add("no container runs /kvstack/%s", bin)
			continue
		}
		_, port := hostPort(s.effective(*k, l.addrVar))
		want := s.ports[l.portVar]
		if port != want {
			p.add("%s: %s listens on port %q, stack.env %s = %s", k, l.addrVar, port, l.portVar, want)
		}
		if got := containerPort(k.c, "http"); want != "" && itoa(got) != want {
			p.add("%s: container port http = %d, stack.env %s = %s", k, got, l.portVar, want)
		}
	}
	if svc := m.service("kvstack-api"); svc == nil || len(svc.Spec.Ports) == 0 || itoa(svc.Spec.Ports[0].Port) != s.ports["KV_API1_PORT"] || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		p.add("Service kvstack-api must serve port %s (KV_API1_PORT) on the pods' http port", s.ports["KV_API1_PORT"])
	}

	for _, bin := range tracing {
		k := m.mainContainer(bin)
		if k == nil {
			continue
		}
		host, port := hostPort(s.effective(*k, "OTEL_EXPORTER_OTLP_ENDPOINT"))
		if want := s.ports["KV_JAEGER_OTLP_HTTP_PORT"]; port != want {
			p.add("%s: OTLP endpoint port %q, stack.env KV_JAEGER_OTLP_HTTP_PORT = %s", k, port, want)
		}
		if !serviceHasPort(m, host, port) {
			p.add("%s: OTLP endpoint %s:%s is no Service port of the build", k, host, port)
		}
	}
	if j := m.deployment("kvstack-jaeger"); j != nil {
		c := &j.Spec.Template.Spec.Containers[0]
		for env, name := range map[string]string{"JAEGER_UI_PORT": "KV_JAEGER_UI_PORT", "JAEGER_OTLP_GRPC_PORT": "KV_JAEGER_OTLP_GRPC_PORT", "JAEGER_OTLP_HTTP_PORT": "KV_JAEGER_OTLP_HTTP_PORT"} {
			e := envVar(c, env)
			if e == nil || e.Value != s.ports[name] {
				p.add("kvstack-jaeger: %s = %v, stack.env %s = %s", env, e, name, s.ports[name])
			}
		}
		for port, name := range map[string]string{"query": "KV_JAEGER_UI_PORT", "otlp-grpc": "KV_JAEGER_OTLP_GRPC_PORT", "otlp-http": "KV_JAEGER_OTLP_HTTP_PORT"} {
			if itoa(containerPort(c, port)) != s.ports[name] {
				p.add("kvstack-jaeger: container port %s = %d, stack.env %s = %s", port, containerPort(c, port), name, s.ports[name])
			}
		}
	}

	// The engines' ports are their operators'; stack.env must agree.
	for name, want := range map[string]int32{"RABBITMQ_PORT": rabbitmqAMQPPort, "RABBITMQ_METRICS_PORT": rabbitmqMetricsPort, "PGPORT": postgresPort} {
		if got := s.port(t, name); got != want {
			p.add("stack.env %s = %d, but the operator serves %d", name, got, want)
		}
	}
	for _, rc := range m.redisClusters {
		if rc.Spec.Port != nil && int32(*rc.Spec.Port) != s.port(t, "REDIS_PORT") {
			p.add("RedisCluster %s: port %d, stack.env REDIS_PORT = %d", rc.Name, *rc.Spec.Port, s.port(t, "REDIS_PORT"))
		}
	}
	for _, bin := range []string{"api", "consumer"} {
		k := m.mainContainer(bin)
		if k == nil {
			continue
		}
		// A Redis Cluster needs the binaries' cluster client: a client of
		// one node would get MOVED for the other masters' keys.
		addrs := strings.Split(s.effective(*k, "REDIS_ADDR"), ",")
		clusterClient := len(addrs) > 1 || s.effective(*k, "REDIS_CLUSTER") == "true"
		if _, ext := m.external["redis"]; !ext && clusterClient != (len(m.redisClusters) > 0) {
			p.add("%s: the build has %d RedisCluster(s), but the binary's cluster mode (REDIS_CLUSTER, or several REDIS_ADDR) is %v", k, len(m.redisClusters), clusterClient)
		}
		if _, ok := m.external["redis"]; ok {
			continue
		}
		for _, addr := range addrs {
			host, port := hostPort(addr)
			if port != s.ports["REDIS_PORT"] {
				p.add("%s: Redis address %s, stack.env REDIS_PORT = %s", k, addr, s.ports["REDIS_PORT"])
			}
			if !slices.Contains(redisHosts(m), host) {
				p.add("%s: Redis address %s names none of the Redis Services the build makes %v", k, addr, redisHosts(m))
			}
		}
	}
	return p
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// redisHosts are the names the redis-operator makes for the build's Redis
// resources: Services, and each cluster pod's name under its headless
// Service.
func redisHosts(m *manifests) []string {
	var hosts []string
	for _, r := range m.redises {
		hosts = append(hosts, r.Name)
	}
	for _, rc := range m.redisClusters {
		hosts = append(hosts, rc.Name+"-leader", rc.Name+"-follower")
		for role, n := range map[string]*int32{"leader": rc.Spec.RedisLeader.Replicas, "follower": rc.Spec.RedisFollower.Replicas} {
			count := *rc.Spec.ClusterSize
			if n != nil {
				count = *n
			}
			for i := range count {
				hosts = append(hosts, rc.Name+"-"+role+"-"+itoa(i)+"."+rc.Name+"-"+role+"-headless")
			}
		}
	}
	return hosts
}

func serviceHasPort(m *manifests, host, port string) bool {
	svc := m.service(strings.Split(host, ".")[0])
	if svc == nil {
		return false
	}
	for _, sp := range svc.Spec.Ports {
		if itoa(sp.Port) == port {
			return true
		}
	}
	return false
}

// Readiness is /readyz, liveness /healthz, routes the binaries serve, on
// the port they listen on.
func checkProbes(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	for _, k := range m.kvContainers() {
		if k.init {
			continue
		}
		for kind, want := range map[string]struct {
			probe *corev1.Probe
			path  string
		}{"readiness": {k.c.ReadinessProbe, "/readyz"}, "liveness": {k.c.LivenessProbe, "/healthz"}} {
			pr := want.probe
			if pr == nil || pr.HTTPGet == nil {
				p.add("%s has no HTTP %s probe", k, kind)
				continue
			}
			if pr.HTTPGet.Path != want.path || !s.serves(pr.HTTPGet.Path) {
				p.add("%s: %s probe on %s, want %s, a route the binaries serve (%v)", k, kind, pr.HTTPGet.Path, want.path, s.routes)
			}
			if port := resolvePort(k.c, pr.HTTPGet.Port); port == 0 || port != containerPort(k.c, "http") {
				p.add("%s: %s probe on port %v, not the http port the binary listens on", k, kind, pr.HTTPGet.Port.String())
			}
		}
		// No stricter than what the chaos campaign proves the outages
		// leave alone (lab/chaos/readiness.go): there a replica is out when
		// /readyz says so, or after three polls in a row unanswered within
		// their second. The probe may take a silent replica out no sooner:
		// a stricter probe could take every replica out on a loaded node,
		// where /readyz itself never would.
		if pr := k.c.ReadinessProbe; pr != nil {
			silent := (pr.FailureThreshold-1)*pr.PeriodSeconds + pr.TimeoutSeconds
			if pr.TimeoutSeconds < chaosProbeTimeout || silent < chaosProbeFailures*chaosProbeTimeout {
				p.add("%s: readiness probe (timeout %d s, period %d s, failureThreshold %d) takes a replica silent for %d s out: sooner than the chaos campaign's %d s (%d polls of %d s)", k, pr.TimeoutSeconds, pr.PeriodSeconds, pr.FailureThreshold, silent, chaosProbeFailures*chaosProbeTimeout, chaosProbeFailures, chaosProbeTimeout)
			}
		}
	}
	return p
}

// chaosProbeTimeout and chaosProbeFailures are how lab/chaos/readiness.go
// tells a replica taken out: a /readyz not answered within a second, three
// times in a row (or a 503).
const (
	chaosProbeTimeout  = 1
	chaosProbeFailures = 3
)

// The API scales by CPU between an HPA's bounds behind a disruption budget
// and spreads across nodes; the consumer scales on both queues by KEDA,
// never below one; no Deployment names the replicas its autoscaler owns;
// each pod is given time to stop cleanly; at their maxima, the pools fit
// PostgreSQL's max_connections.
func checkScaling(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	api, consumer := m.deployment("kvstack-api"), m.deployment("kvstack-consumer")
	if api == nil || consumer == nil {
		p.add("Deployments kvstack-api and kvstack-consumer must exist")
		return p
	}
	prod := strings.HasPrefix(m.overlay, "prod")

	var apiMax int32
	hpaFound := false
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == api.Name {
			hpaFound, apiMax = true, h.Spec.MaxReplicas
			if prod && (h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2) {
				p.add("HPA %s: minReplicas below 2 in prod", h.Name)
			}
		}
	}
	if !hpaFound {
		p.add("no HPA scales %s", api.Name)
	}
	// An autoscaler owns the replicas of its target: a Deployment that
	// names them too is scaled back to that number by every apply.
	for _, d := range m.deployments {
		if d.Spec.Replicas != nil && m.autoscaled(d.Name) {
			p.add("%s: spec.replicas %d under an autoscaler: every apply would scale it back to that", d.Name, *d.Spec.Replicas)
		}
	}
	pdb := false
	for _, b := range m.pdbs {
		if selects(b.Spec.Selector, api.Spec.Template.Labels) {
			pdb = true
		}
	}
	if !pdb {
		p.add("no PodDisruptionBudget covers %s", api.Name)
	}
	spread := false
	for _, c := range api.Spec.Template.Spec.TopologySpreadConstraints {
		if c.TopologyKey == "kubernetes.io/hostname" && c.WhenUnsatisfiable == corev1.DoNotSchedule && selects(c.LabelSelector, api.Spec.Template.Labels) {
			spread = true
		}
	}
	if !spread {
		p.add("%s is not spread across nodes (hostname, DoNotSchedule)", api.Name)
	}

	// KEDA: both queues, from the binaries' own queue names.
	var consumerMax int32
	k := m.mainContainer("consumer")
	soFound := false
	for _, so := range m.scaledObjects {
		if so.Spec.ScaleTargetRef == nil || so.Spec.ScaleTargetRef.Name != consumer.Name {
			continue
		}
		soFound = true
		if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
			p.add("ScaledObject %s: minReplicaCount %v, want at least 1", so.Name, so.Spec.MinReplicaCount)
		}
		if so.Spec.MaxReplicaCount != nil {
			consumerMax = *so.Spec.MaxReplicaCount
		}
		var queues []string
		for _, tr := range so.Spec.Triggers {
			if tr.Type != "rabbitmq" || tr.Metadata["mode"] != "QueueLength" || tr.AuthenticationRef == nil {
				p.add("ScaledObject %s: trigger %+v is not a rabbitmq QueueLength trigger with authentication", so.Name, tr.Metadata)
				continue
			}
			queues = append(queues, tr.Metadata["queueName"])
		}
		slices.Sort(queues)
		if k != nil {
			want := []string{s.effective(*k, "RABBITMQ_QUEUE_ADD"), s.effective(*k, "RABBITMQ_QUEUE_DEL")}
			slices.Sort(want)
			if !slices.Equal(queues, want) {
				p.add("ScaledObject %s scales on queues %v, the consumer consumes %v", so.Name, queues, want)
			}
		}
	}
	if !soFound {
		p.add("no ScaledObject scales %s", consumer.Name)
	}

	// Graceful stops, docs/DESIGN.md's rule ("Stopping: drain, then exit"):
	// the kubelet sends SIGTERM after the preStop sleep P and kills the
	// pod terminationGracePeriodSeconds after the stop began, which must
	// exceed P + the binary's stop bound + 5 s for the last spans. The
	// API's bound, KV_SHUTDOWN_TIMEOUT, holds its drain and a publish in
	// flight (it refuses to start otherwise); P + KV_DRAIN_DELAY must give
	// the routing time to forget the pod.
	for _, k := range m.kvContainers() {
		if k.init {
			continue
		}
		grace := int64(30)
		if g := k.pod.TerminationGracePeriodSeconds; g != nil {
			grace = *g
		}
		bound, err := s.duration(k, "KV_SHUTDOWN_TIMEOUT")
		if err != nil {
			p.add("%v", err)
			continue
		}
		var preStop time.Duration
		if ps := k.c.Lifecycle; ps != nil && ps.PreStop != nil && ps.PreStop.Sleep != nil {
			preStop = time.Duration(ps.PreStop.Sleep.Seconds) * time.Second
		}
		switch k.bin {
		case "api":
			drain, err1 := s.duration(k, "KV_DRAIN_DELAY")
			publish, err2 := s.duration(k, "RABBITMQ_PUBLISH_TIMEOUT")
			if err1 != nil || err2 != nil {
				p.add("%v %v", err1, err2)
				continue
			}
			if bound <= drain+publish {
				p.add("%s: KV_SHUTDOWN_TIMEOUT %s, not above KV_DRAIN_DELAY %s + RABBITMQ_PUBLISH_TIMEOUT %s: the API refuses to start", k, bound, drain, publish)
			}
			if preStop+drain < routingForgets {
				p.add("%s: preStop %s + KV_DRAIN_DELAY %s: under the %s the routing takes to forget a pod, so requests reach it after it stopped taking them", k, preStop, drain, routingForgets)
			}
		case "consumer":
			batch, err1 := s.duration(k, "CONSUMER_SHUTDOWN_GRACE")
			wait, err2 := s.duration(k, "CONSUMER_BATCH_WAIT")
			if err1 != nil || err2 != nil {
				p.add("%v %v", err1, err2)
				continue
			}
			bound = max(bound, batch+wait)
		}
		need := preStop + bound + spanFlush
		if time.Duration(grace)*time.Second <= need {
			p.add("%s: terminationGracePeriodSeconds %d, not above the %s a clean stop may take (preStop %s + stop bound %s + %s of span flush)", k, grace, need, preStop, bound, spanFlush)
		}
	}

	// PostgreSQL connections at the maxima.
	for _, pg := range m.postgreses {
		maxConns, err := strconv.Atoi(pg.Spec.PostgresConfiguration.Parameters["max_connections"])
		if err != nil {
			maxConns = 100 // PostgreSQL's default
		}
		total := 0
		for bin, replicas := range map[string]int32{"api": apiMax, "consumer": consumerMax} {
			if k := m.mainContainer(bin); k != nil {
				n, err := s.integer(*k, "PG_MAX_CONNS")
				if err != nil {
					p.add("%v", err)
				}
				total += n * int(replicas)
			}
		}
		const reserve = 20 // superusers, the operator, migrations, replication
		if total+reserve > maxConns {
			p.add("Cluster %s: max_connections %d, but the API and consumers at their maxima may open %d (+%d reserved)", pg.Name, maxConns, total, reserve)
		}
	}
	return p
}

// The engines: quorum queues everywhere; in prod three RabbitMQ nodes, three
// PostgreSQL instances with a required synchronous standby, and Redis
// Cluster with a replica per master, each spread across nodes.
func checkEngines(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	for _, bin := range []string{"api", "consumer"} {
		if k := m.mainContainer(bin); k != nil && s.effective(*k, "RABBITMQ_QUEUE_TYPE") != "quorum" {
			p.add("%s declares %s queues, want quorum", k, s.effective(*k, "RABBITMQ_QUEUE_TYPE"))
		}
	}
	// Each engine in-cluster (one resource of its operator) or external.
	one := func(engine string, n int) int {
		if _, ok := m.external[engine]; ok {
			return n + 1
		}
		return n
	}
	if one("rabbitmq", len(m.rabbitmqs)) != 1 || one("postgresql", len(m.postgreses)) != 1 || one("redis", len(m.redises)+len(m.redisClusters)) != 1 {
		p.add("want each engine once, in-cluster or external; have %d RabbitmqCluster, %d Cluster, %d Redis resources, external %v", len(m.rabbitmqs), len(m.postgreses), len(m.redises)+len(m.redisClusters), m.external)
		return p
	}
	if len(m.external) > 0 {
		return p
	}
	if !strings.HasPrefix(m.overlay, "prod") {
		return p
	}
	if r := m.rabbitmqs[0]; r.Spec.Replicas == nil || *r.Spec.Replicas != 3 || r.Spec.Affinity == nil || r.Spec.Affinity.PodAntiAffinity == nil {
		p.add("RabbitmqCluster %s: want 3 replicas with pod anti-affinity", r.Name)
	}
	pg := m.postgreses[0]
	if sync := pg.Spec.PostgresConfiguration.Synchronous; pg.Spec.Instances != 3 || sync == nil || sync.Number < 1 || sync.DataDurability != "required" {
		p.add("Cluster %s: want 3 instances, synchronous replication to at least 1 standby, required", pg.Name)
	}
	if a := pg.Spec.Affinity; a.EnablePodAntiAffinity == nil || !*a.EnablePodAntiAffinity || a.PodAntiAffinityType != "required" {
		p.add("Cluster %s: instances are not kept on separate nodes", pg.Name)
	}
	if len(m.redisClusters) != 1 {
		p.add("prod runs no RedisCluster")
	} else if rc := m.redisClusters[0]; *rc.Spec.ClusterSize < 3 || rc.Spec.RedisFollower.Replicas == nil || *rc.Spec.RedisFollower.Replicas < 3 {
		p.add("RedisCluster %s: want at least 3 masters with a replica each", rc.Name)
	}
	return p
}

// The HTTPRoute routes exactly the API's public routes (each Exact, so
// /metrics, /debug/pprof/ and the probes stay unreachable) to the API's
// Service, for one host, through the Gateway's listener; each rule waits
// as long as nginx's longest location of its path; a rule that carries
// writes retries on no answer only (a 502: never the API's own 503) and
// never after its timeout (its whole deadline is the backend's); a rule
// retries at most as often as nginx; every answer carries HSTS. TLS: a
// Certificate for the host, into the Secret the listener reads, in the
// Gateway's namespace, from an Issuer or a ClusterIssuer, a new key at each
// renewal.
func checkEdge(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	conf := parseNginx(t)
	if len(m.httpRoutes) != 1 {
		p.add("want one HTTPRoute, have %d", len(m.httpRoutes))
		return p
	}
	hr := m.httpRoutes[0]
	if len(hr.Spec.Hostnames) != 1 || string(hr.Spec.Hostnames[0]) == "" {
		p.add("HTTPRoute %s: hostnames %v, want the one host", hr.Name, hr.Spec.Hostnames)
	}
	if len(hr.Spec.ParentRefs) != 1 || hr.Spec.ParentRefs[0].SectionName == nil {
		p.add("HTTPRoute %s: want one parent, the Gateway's HTTPS listener (sectionName)", hr.Name)
	}
	var paths []string
	for _, rule := range hr.Spec.Rules {
		if len(rule.Matches) != 1 || rule.Matches[0].Path == nil || rule.Matches[0].Path.Type == nil || *rule.Matches[0].Path.Type != gatewayv1.PathMatchExact {
			p.add("HTTPRoute %s: a rule that is not one Exact path: %+v", hr.Name, rule.Matches)
			continue
		}
		path := *rule.Matches[0].Path.Value
		paths = append(paths, path)
		if strings.HasPrefix(path, "/metrics") || strings.HasPrefix(path, "/debug") || slices.Contains(probePaths, path) || !s.serves(path) {
			p.add("HTTPRoute %s routes %s, which must not be public or is not served", hr.Name, path)
		}
		if len(rule.BackendRefs) != 1 || rule.BackendRefs[0].Name != "kvstack-api" || rule.BackendRefs[0].Port == nil || itoa(int32(*rule.BackendRefs[0].Port)) != s.ports["KV_API1_PORT"] {
			p.add("HTTPRoute %s %s: want one backend, Service kvstack-api port %s", hr.Name, path, s.ports["KV_API1_PORT"])
		}
		// Clients' trace context is not trusted, as at nginx.
		var removed []string
		for _, f := range rule.Filters {
			if f.Type == gatewayv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil {
				removed = append(removed, f.RequestHeaderModifier.Remove...)
			}
		}
		for _, h := range []string{"traceparent", "tracestate", "baggage"} {
			if !slices.Contains(removed, h) {
				p.add("HTTPRoute %s %s: passes the clients' %s on (remove it, as nginx drops it from untrusted sources)", hr.Name, path, h)
			}
		}
		// HSTS on every answer, for at least a year.
		hsts := ""
		for _, f := range rule.Filters {
			if f.Type == gatewayv1.HTTPRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil {
				for _, h := range f.ResponseHeaderModifier.Set {
					if strings.EqualFold(string(h.Name), "Strict-Transport-Security") {
						hsts = h.Value
					}
				}
			}
		}
		if age, ok := hstsMaxAge(hsts); !ok || age < hstsMinAge {
			p.add("HTTPRoute %s %s: Strict-Transport-Security %q, want max-age of at least %d s set on every answer", hr.Name, path, hsts, hstsMinAge)
		}
		read, err := conf.longest(path, "proxy_read_timeout")
		want, err2 := nginxSeconds(read)
		if err != nil || err2 != nil || rule.Timeouts == nil || rule.Timeouts.Request == nil || rule.Timeouts.BackendRequest == nil {
			p.add("HTTPRoute %s %s: want timeouts (request, backendRequest) of nginx's %q", hr.Name, path, read)
			continue
		}
		req, err1 := time.ParseDuration(string(*rule.Timeouts.Request))
		be, err2 := time.ParseDuration(string(*rule.Timeouts.BackendRequest))
		if err1 != nil || err2 != nil || int64(be.Seconds()) != want {
			p.add("HTTPRoute %s %s: backendRequest %v, nginx's longest proxy_read_timeout %q", hr.Name, path, *rule.Timeouts.BackendRequest, read)
		}
		if r := rule.Retry; r != nil {
			tries, _ := strconv.Atoi(conf.directive(path, "proxy_next_upstream_tries"))
			if r.Attempts != nil && *r.Attempts > tries-1 {
				p.add("HTTPRoute %s %s: %d retries, nginx tries %d times in all", hr.Name, path, *r.Attempts, tries)
			}
			allowed := strings.Fields(conf.common(path, "proxy_next_upstream"))
			for _, c := range r.Codes {
				if !slices.Contains(allowed, "http_"+strconv.Itoa(int(c))) {
					p.add("HTTPRoute %s %s: retries on %d, which nginx never retries there (%v)", hr.Name, path, c, allowed)
				}
			}
			if conf.carriesWrites(path) && req != be {
				p.add("HTTPRoute %s %s carries writes: its request timeout %v must equal its backendRequest %v, so that no retry follows a backend's timeout", hr.Name, path, req, be)
			}
		}
	}
	slices.Sort(paths)
	if want := publicRoutes(conf); !slices.Equal(paths, want) {
		p.add("HTTPRoute paths %v, want the API's routes that nginx routes %v", paths, want)
	}
	// TLS at the Gateway: the chart's Certificate, or the user's Secret.
	for _, c := range m.edgeCertificates() {
		if ref := c.Spec.IssuerRef; ref.Group != "cert-manager.io" || (ref.Kind != "Issuer" && ref.Kind != "ClusterIssuer") || ref.Name == "" {
			p.add("Certificate %s: issuerRef %+v, want a cert-manager.io Issuer (in the Gateway's namespace) or ClusterIssuer by name", c.Name, ref)
		}
		if c.Spec.PrivateKey == nil || c.Spec.PrivateKey.RotationPolicy != "Always" {
			p.add("Certificate %s: want privateKey.rotationPolicy Always (a new key at each renewal)", c.Name)
		}
		if len(hr.Spec.Hostnames) == 1 && !slices.Contains(c.Spec.DNSNames, string(hr.Spec.Hostnames[0])) {
			p.add("Certificate %s: dnsNames %v lack the route's host %s", c.Name, c.Spec.DNSNames, hr.Spec.Hostnames[0])
		}
		if pr := hr.Spec.ParentRefs; len(pr) == 1 && (pr[0].Namespace == nil || string(*pr[0].Namespace) != c.Namespace) {
			p.add("Certificate %s in %s, not in the Gateway's namespace, where its listener reads Secret %s", c.Name, c.Namespace, c.Spec.SecretName)
		}
	}
	return p
}

// edgeCertificates are the Certificates that are not the release's own
// engines' (issued by an Issuer the release makes).
func (m *manifests) edgeCertificates() []*certmanagerv1.Certificate {
	var out []*certmanagerv1.Certificate
	for _, c := range m.certificates {
		internal := false
		for _, is := range m.issuers {
			if c.Spec.IssuerRef.Kind == "Issuer" && is.Name == c.Spec.IssuerRef.Name && is.Namespace == c.Namespace {
				internal = true
			}
		}
		if !internal {
			out = append(out, c)
		}
	}
	return out
}

// hstsMinAge is the shortest HSTS max-age the edge may send: a year, what
// browsers' preload lists ask for.
const hstsMinAge = 365 * 24 * 3600

// hstsMaxAge reads max-age from a Strict-Transport-Security value.
func hstsMaxAge(v string) (int, bool) {
	for _, d := range strings.Split(v, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		if strings.EqualFold(k, "max-age") {
			n, err := strconv.Atoi(strings.Trim(val, `"`))
			return n, err == nil
		}
	}
	return 0, false
}

// probePaths are the routes the kubelet probes: nginx routes them for
// compose's and the native stack's health checks, a public edge must not
// (they tell anyone the state of every dependency).
var probePaths = []string{"/healthz", "/readyz"}

// publicRoutes are what nginx routes, but the probes.
func publicRoutes(conf nginxConf) []string {
	return slices.DeleteFunc(conf.routed(), func(p string) bool { return slices.Contains(probePaths, p) })
}
