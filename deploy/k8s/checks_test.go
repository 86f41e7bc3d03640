package k8s

import (
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

var checks = map[string]check{
	"env":        checkEnv,
	"ports":      checkPorts,
	"probes":     checkProbes,
	"scaling":    checkScaling,
	"engines":    checkEngines,
	"ingress":    checkIngress,
	"monitoring": checkMonitoring,
	"images":     checkImages,
	"secrets":    checkSecrets,
	"network":    checkNetwork,
	"capacity":   checkCapacity,
	"redis":      checkRedisMemory,
	"routing":    checkAlertRouting,
	"versions":   checkVersions,
	"postgres":   checkPostgresMonitoring,
}

func TestCrossChecks(t *testing.T) {
	for _, o := range overlays {
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
		if want := len(m.redisClusters) > 0; clusterClient != want {
			p.add("%s: the build has %d RedisCluster(s), but the binary's cluster mode (REDIS_CLUSTER, or several REDIS_ADDR) is %v", k, len(m.redisClusters), clusterClient)
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
	}
	return p
}

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
	prod := m.overlay == "prod"

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

	// Graceful stops: the kubelet sends SIGTERM after the preStop hook,
	// and kills the pod terminationGracePeriodSeconds after the hook began.
	// The API's stop waits for its requests in flight, the longest of which
	// (?wait=: a publish, then up to KV_WAIT_MAX) must fit in its
	// KV_SHUTDOWN_TIMEOUT, or a rollout cuts it and the edge, seeing no
	// answer, sends the write again; then any drain the binary does.
	for _, k := range m.kvContainers() {
		if k.init {
			continue
		}
		grace := int64(30)
		if g := k.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = *g
		}
		need, err := s.duration(k, "KV_SHUTDOWN_TIMEOUT")
		if err != nil {
			p.add("%v", err)
			continue
		}
		switch k.bin {
		case "api":
			wait, err1 := s.duration(k, "KV_WAIT_MAX")
			publish, err2 := s.duration(k, "RABBITMQ_PUBLISH_TIMEOUT")
			if err1 != nil || err2 != nil {
				p.add("%v %v", err1, err2)
				continue
			}
			if longest := wait + publish; need < longest {
				p.add("%s: KV_SHUTDOWN_TIMEOUT %s, shorter than the longest request (KV_WAIT_MAX %s + RABBITMQ_PUBLISH_TIMEOUT %s): a rollout cuts it", k, need, wait, publish)
			}
		case "consumer":
			batch, err1 := s.duration(k, "CONSUMER_SHUTDOWN_GRACE")
			wait, err2 := s.duration(k, "CONSUMER_BATCH_WAIT")
			if err1 != nil || err2 != nil {
				p.add("%v %v", err1, err2)
				continue
			}
			need = max(need, batch+wait)
		}
		// A drain before the stop (issue 21), when the binary has one.
		for _, name := range []string{"KV_DRAIN_TIMEOUT", "KV_DRAIN_DELAY"} {
			if _, reads := s.env[k.bin][name]; reads {
				d, err := s.duration(k, name)
				if err != nil {
					p.add("%v", err)
				}
				need += d
			}
		}
		needSec := int64(need.Seconds())
		if ps := k.c.Lifecycle; ps != nil && ps.PreStop != nil && ps.PreStop.Sleep != nil {
			needSec += ps.PreStop.Sleep.Seconds
		}
		if grace <= needSec {
			p.add("%s: terminationGracePeriodSeconds %d, not above the %ds a clean stop may take", k, grace, needSec)
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
	if len(m.rabbitmqs) != 1 || len(m.postgreses) != 1 || len(m.redises)+len(m.redisClusters) != 1 {
		p.add("want one RabbitmqCluster, one CloudNativePG Cluster and one Redis resource; have %d, %d, %d", len(m.rabbitmqs), len(m.postgreses), len(m.redises)+len(m.redisClusters))
		return p
	}
	if m.overlay != "prod" {
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

// The Ingress routes exactly what nginx routes, each path Exact (so
// /metrics and /debug/pprof/ stay unreachable), to the API's Service, with
// nginx's body size, timeouts, retries and, per path, buffering.
func checkIngress(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	conf := parseNginx(t)
	api := m.mainContainer("api")
	if api == nil {
		p.add("no API container")
		return p
	}
	var paths []string
	for _, ing := range m.ingresses {
		if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
			p.add("Ingress %s: class %v, want nginx (ingress-nginx)", ing.Name, ing.Spec.IngressClassName)
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, hp := range rule.HTTP.Paths {
				paths = append(paths, hp.Path)
				if hp.PathType == nil || *hp.PathType != "Exact" {
					p.add("Ingress %s: path %s is not Exact: it would route what lies below it", ing.Name, hp.Path)
				}
				if strings.HasPrefix(hp.Path, "/metrics") || strings.HasPrefix(hp.Path, "/debug") || slices.Contains(probePaths, hp.Path) || !s.serves(hp.Path) {
					p.add("Ingress %s routes %s, which must not be public or is not served", ing.Name, hp.Path)
				}
				b := hp.Backend.Service
				if b == nil || b.Name != "kvstack-api" || b.Port.Name != "http" {
					p.add("Ingress %s: %s goes to %+v, want Service kvstack-api port http", ing.Name, hp.Path, b)
				}
				p = append(p, ingressMatchesNginx(ing.Name, hp.Path, ing.Annotations, conf, s.effective(*api, "KV_MAX_BODY_BYTES"))...)
			}
		}
	}
	slices.Sort(paths)
	if want := publicRoutes(conf); !slices.Equal(paths, want) {
		p.add("Ingress paths %v, want the API's routes that nginx routes %v", paths, want)
	}
	return p
}

// probePaths are the routes the kubelet probes: nginx routes them for
// compose's and the native stack's health checks, a public edge must not
// (they tell anyone the state of every dependency).
var probePaths = []string{"/healthz", "/readyz"}

// publicRoutes are what nginx routes, but the probes.
func publicRoutes(conf nginxConf) []string {
	return slices.DeleteFunc(conf.routed(), func(p string) bool { return slices.Contains(probePaths, p) })
}

// writesNotRetriedAfterReadTimeout: a path that carries writes may retry on
// `timeout` only within a window shorter than its read timeout, so that a
// connect timeout is retried and a read timeout never is: the pod that
// timed out may still publish the write it holds, stamped later than what
// the client writes after the retry's 202.
func writesNotRetriedAfterReadTimeout(name, path string, ann map[string]string, conf nginxConf) problems {
	const prefix = "nginx.ingress.kubernetes.io/"
	if !conf.carriesWrites(path) || !slices.Contains(strings.Fields(ann[prefix+"proxy-next-upstream"]), "timeout") {
		return nil
	}
	window, err1 := nginxSeconds(ann[prefix+"proxy-next-upstream-timeout"])
	read, err2 := nginxSeconds(ann[prefix+"proxy-read-timeout"])
	if err1 != nil || err2 != nil || window == 0 || window >= read {
		var p problems
		p.add("Ingress %s %s carries writes and retries on timeout within %q, not below its read timeout %q: a write that timed out would be sent again",
			name, path, ann[prefix+"proxy-next-upstream-timeout"], ann[prefix+"proxy-read-timeout"])
		return p
	}
	return nil
}

func ingressMatchesNginx(name, path string, ann map[string]string, conf nginxConf, maxBody string) problems {
	var p problems
	const prefix = "nginx.ingress.kubernetes.io/"
	body := strings.ReplaceAll(conf.directive(path, "client_max_body_size"), "${KV_MAX_BODY_BYTES}", maxBody)
	want, err1 := parseSize(body)
	got, err2 := parseSize(ann[prefix+"proxy-body-size"])
	if err1 != nil || err2 != nil || got != want {
		p.add("Ingress %s %s: proxy-body-size %q, nginx client_max_body_size %q", name, path, ann[prefix+"proxy-body-size"], body)
	}
	for directive, annotation := range map[string]string{
		"proxy_connect_timeout":       "proxy-connect-timeout",
		"proxy_send_timeout":          "proxy-send-timeout",
		"proxy_read_timeout":          "proxy-read-timeout",
		"proxy_next_upstream_timeout": "proxy-next-upstream-timeout",
	} {
		// The longest of the path's locations: one Ingress path also
		// carries the requests that wait for a version.
		value, err := conf.longest(path, directive)
		w, err1 := nginxSeconds(value)
		g, err2 := nginxSeconds(ann[prefix+annotation])
		if err != nil || err1 != nil || err2 != nil || g != w {
			p.add("Ingress %s %s: %s %q, nginx %s %q (the longest of its locations)", name, path, annotation, ann[prefix+annotation], directive, value)
		}
	}
	if got, want := ann[prefix+"proxy-next-upstream-tries"], conf.directive(path, "proxy_next_upstream_tries"); got != want {
		p.add("Ingress %s %s: proxy-next-upstream-tries %q, nginx proxy_next_upstream_tries %q", name, path, got, want)
	}
	// Retried on what every location of the path retries on: one Ingress
	// path carries reads and writes alike.
	if got, want := ann[prefix+"proxy-next-upstream"], conf.common(path, "proxy_next_upstream"); got != want {
		p.add("Ingress %s %s: proxy-next-upstream %q, nginx retries every request of the path on %q", name, path, got, want)
	}
	p = append(p, writesNotRetriedAfterReadTimeout(name, path, ann, conf)...)
	wantBuf := conf.directive(path, "proxy_buffering")
	if wantBuf == "" {
		wantBuf = "on" // nginx's default
	}
	gotBuf := ann[prefix+"proxy-buffering"]
	if gotBuf == "" {
		gotBuf = "off" // ingress-nginx's default
	}
	if gotBuf != wantBuf {
		p.add("Ingress %s %s: proxy-buffering %q, nginx proxy_buffering %q", name, path, gotBuf, wantBuf)
	}
	return p
}
