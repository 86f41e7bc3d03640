package k8s

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every image is pinned by tag (never latest); kvstack's containers run a
// binary the Dockerfile builds; the engines and Jaeger run the release
// lines docker-compose.yml runs.
func checkImages(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	images := map[string]string{} // what -> image
	for _, d := range m.deployments {
		for _, c := range append(slices.Clone(d.Spec.Template.Spec.InitContainers), d.Spec.Template.Spec.Containers...) {
			images[d.Name+"/"+c.Name] = c.Image
		}
	}
	for _, r := range m.rabbitmqs {
		images["RabbitmqCluster "+r.Name] = r.Spec.Image
	}
	for _, pg := range m.postgreses {
		images["Cluster "+pg.Name] = pg.Spec.ImageName
	}
	for _, r := range m.redises {
		images["Redis "+r.Name] = r.Spec.KubernetesConfig.Image
		if e := r.Spec.RedisExporter; e != nil {
			images["Redis "+r.Name+" exporter"] = e.Image
		}
	}
	for _, r := range m.redisClusters {
		images["RedisCluster "+r.Name] = r.Spec.KubernetesConfig.Image
		if e := r.Spec.RedisExporter; e != nil {
			images["RedisCluster "+r.Name+" exporter"] = e.Image
		}
	}
	for what, img := range images {
		if _, tag := splitImage(img); tag == "" || tag == "latest" {
			p.add("%s: image %q is not pinned to a tag", what, img)
		}
	}

	dockerfile := string(readRepo(t, "Dockerfile"))
	for _, k := range m.kvContainers() {
		if name, _ := splitImage(k.c.Image); name != "kvstack" && !strings.HasSuffix(name, "/kvstack") {
			p.add("%s runs image %q, not the kvstack image", k, k.c.Image)
		}
		if !strings.Contains(dockerfile, "./cmd/"+k.bin) {
			p.add("%s runs /kvstack/%s, which the Dockerfile does not build", k, k.bin)
		}
	}

	compose := composeImages(t)
	same := func(what, ours, composeService string, parts int) {
		_, tag := splitImage(ours)
		_, ctag := splitImage(compose[composeService])
		if got, want := versionParts(tag, parts), versionParts(ctag, parts); got == "" || got != want {
			p.add("%s runs %s (%s), docker-compose.yml's %s runs %s (%s)", what, ours, got, composeService, compose[composeService], want)
		}
	}
	for _, r := range m.rabbitmqs {
		same("RabbitmqCluster "+r.Name, r.Spec.Image, "rabbitmq", 2)
	}
	for _, pg := range m.postgreses {
		same("Cluster "+pg.Name, pg.Spec.ImageName, "postgres", 1)
	}
	for _, r := range m.redises {
		same("Redis "+r.Name, r.Spec.KubernetesConfig.Image, "redis", 1)
	}
	for _, r := range m.redisClusters {
		same("RedisCluster "+r.Name, r.Spec.KubernetesConfig.Image, "redis", 1)
	}
	if j := m.deployment("kvstack-jaeger"); j != nil {
		same("kvstack-jaeger", j.Spec.Template.Spec.Containers[0].Image, "jaeger", 3)
	}
	// The exporters: the release compose runs, hence the Debian package's
	// the native stack runs (deploy/composetest), whose series the
	// dashboard and rules are tested against.
	if d := m.deployment("kvstack-postgres-exporter"); d != nil {
		same("kvstack-postgres-exporter", d.Spec.Template.Spec.Containers[0].Image, "postgres-exporter", 3)
	}
	for _, r := range m.redises {
		if e := r.Spec.RedisExporter; e != nil {
			same("Redis "+r.Name+" exporter", e.Image, "redis-exporter", 3)
		}
	}
	for _, r := range m.redisClusters {
		if e := r.Spec.RedisExporter; e != nil {
			same("RedisCluster "+r.Name+" exporter", e.Image, "redis-exporter", 3)
		}
	}
	return p
}

// splitImage splits repo/name:tag (a registry's port is not a tag).
func splitImage(img string) (string, string) {
	img, _, _ = strings.Cut(img, "@")
	i := strings.LastIndex(img, ":")
	if i < 0 || strings.Contains(img[i:], "/") {
		return img, ""
	}
	return img[:i], img[i+1:]
}

// versionParts is the first n dot-separated numbers of a tag: v7.0.15 -> 7,
// 3.13.7-management -> 3.13 (n=2).
func versionParts(tag string, n int) string {
	m := regexp.MustCompile(`^v?(\d+(?:\.\d+)*)`).FindStringSubmatch(tag)
	if m == nil {
		return ""
	}
	parts := strings.Split(m[1], ".")
	if len(parts) < n {
		return ""
	}
	return strings.Join(parts[:n], ".")
}

// secretRef is one reference to a Secret key.
type secretRef struct{ where, name, key string }

func (m *manifests) secretRefs() []secretRef {
	var refs []secretRef
	for _, k := range m.kvContainers() {
		for _, e := range k.c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				refs = append(refs, secretRef{k.String() + " " + e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key})
			}
		}
	}
	for _, ta := range m.triggerAuths {
		for _, r := range ta.Spec.SecretTargetRef {
			refs = append(refs, secretRef{"TriggerAuthentication " + ta.Name, r.Name, r.Key})
		}
	}
	for _, ac := range m.amConfigs {
		for _, r := range ac.Spec.Receivers {
			for _, wh := range r.WebhookConfigs {
				if wh.URLSecret != nil {
					refs = append(refs, secretRef{"AlertmanagerConfig " + ac.Name, wh.URLSecret.Name, wh.URLSecret.Key})
				}
			}
		}
	}
	redisSecret := func(where string, rs *RedisSecret) {
		if rs != nil && rs.Name != nil && rs.Key != nil {
			refs = append(refs, secretRef{where, *rs.Name, *rs.Key})
		}
	}
	for _, r := range m.redises {
		redisSecret("Redis "+r.Name, r.Spec.KubernetesConfig.RedisSecret)
	}
	for _, r := range m.redisClusters {
		redisSecret("RedisCluster "+r.Name, r.Spec.KubernetesConfig.RedisSecret)
	}
	return refs
}

// No Secret is committed: each reference is to a Secret an operator
// generates, or to one the README tells the user to create, with its key;
// the binaries' credentials come from the right one.
func checkSecrets(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	for _, sec := range m.secrets {
		p.add("Secret %s is committed; reference it instead", sec.Name)
	}
	generated := map[string]string{}
	for _, r := range m.rabbitmqs {
		generated[r.Name+rabbitmqSecretTail] = rabbitmqSecretKey
	}
	for _, pg := range m.postgreses {
		generated[pg.Name+"-app"] = postgresSecretKey
	}
	readme := string(readRepo(t, "README.md"))
	for _, ref := range m.secretRefs() {
		if key, ok := generated[ref.name]; ok {
			if ref.key != key {
				p.add("%s: key %s of %s, which the operator fills under %s", ref.where, ref.key, ref.name, key)
			}
			continue
		}
		if !regexp.MustCompile(`kubectl[^\n]*create secret generic ` + regexp.QuoteMeta(ref.name) + ` [^\n]*--from-literal=` + regexp.QuoteMeta(ref.key) + `=`).MatchString(readme) {
			p.add("%s: Secret %s (key %s) is neither an operator's nor created by the README's `kubectl create secret generic %s --from-literal=%s=…`", ref.where, ref.name, ref.key, ref.name, ref.key)
		}
	}
	want := map[string]secretRef{}
	for _, r := range m.rabbitmqs {
		want["RABBITMQ_URL"] = secretRef{name: r.Name + rabbitmqSecretTail, key: rabbitmqSecretKey}
	}
	for _, pg := range m.postgreses {
		want["DATABASE_URL"] = secretRef{name: pg.Name + "-app", key: postgresSecretKey}
	}
	for _, ref := range m.secretRefs() {
		if strings.HasPrefix(ref.where, "Redis") {
			want["REDIS_PASSWORD"] = secretRef{name: ref.name, key: ref.key}
		}
	}
	for _, k := range m.kvContainers() {
		for name, w := range want {
			if _, reads := s.env[k.bin][name]; !reads {
				continue
			}
			e := envVar(k.c, name)
			if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != w.name || e.ValueFrom.SecretKeyRef.Key != w.key {
				p.add("%s: %s must come from Secret %s key %s", k, name, w.name, w.key)
			}
		}
	}
	for _, ta := range m.triggerAuths {
		for _, r := range ta.Spec.SecretTargetRef {
			if w := want["RABBITMQ_URL"]; r.Parameter != "host" || r.Name != w.name || r.Key != w.key {
				p.add("TriggerAuthentication %s: %s from %s/%s, want host from %s/%s", ta.Name, r.Parameter, r.Name, r.Key, w.name, w.key)
			}
		}
	}
	return p
}

// Every kvstack pod is closed both ways but for what it needs: the API and
// the consumer reach DNS and each engine on the port of stack.env, and each
// engine lets them in; ingress-nginx reaches the API, Prometheus every
// scrape target, KEDA the broker; nothing else gets in or out.
func checkNetwork(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	ns := "kvstack"
	if len(m.namespaces) == 1 {
		ns = m.namespaces[0].Name
	}
	for _, d := range m.deployments {
		in, out := false, false
		for _, np := range m.netpols {
			if selects(&np.Spec.PodSelector, d.Spec.Template.Labels) {
				in = in || hasType(np, "Ingress")
				out = out || hasType(np, "Egress")
			}
		}
		if !in || !out {
			p.add("pods of %s are not isolated both ways (ingress %v, egress %v)", d.Name, in, out)
		}
	}
	jaeger := m.deployment("kvstack-jaeger")
	type dep struct {
		name string
		to   pod
		port int32
	}
	var deps []dep
	deps = append(deps, dep{"DNS", pod{ns: "kube-system", labels: map[string]string{"k8s-app": "kube-dns"}}, 53})
	for _, pg := range m.postgreses {
		deps = append(deps, dep{"PostgreSQL", pod{ns: ns, labels: map[string]string{postgresPodLabel: pg.Name}}, s.port(t, "PGPORT")})
	}
	for _, r := range m.rabbitmqs {
		deps = append(deps, dep{"RabbitMQ", pod{ns: ns, labels: map[string]string{rabbitmqPodLabel: r.Name}}, s.port(t, "RABBITMQ_PORT")})
	}
	for _, r := range m.redises {
		deps = append(deps, dep{"Redis", pod{ns: ns, labels: map[string]string{redisPodLabel: r.Name}}, s.port(t, "REDIS_PORT")})
	}
	for _, r := range m.redisClusters {
		for _, role := range []string{"leader", "follower"} {
			deps = append(deps, dep{"Redis " + role, pod{ns: ns, labels: map[string]string{redisPodLabel: r.Name + "-" + role}}, s.port(t, "REDIS_PORT")})
		}
	}
	if jaeger != nil {
		deps = append(deps, dep{"Jaeger OTLP", podOf(jaeger), s.port(t, "KV_JAEGER_OTLP_HTTP_PORT")})
	}
	stranger := pod{ns: "default", labels: map[string]string{"app": "stranger"}}
	for _, name := range []string{"kvstack-api", "kvstack-consumer"} {
		d := m.deployment(name)
		if d == nil {
			continue
		}
		client := podOf(d)
		for _, dp := range deps {
			if !allowed(m.netpols, client, dp.to, dp.port) {
				p.add("%s cannot reach %s %v on port %d", name, dp.name, dp.to, dp.port)
			}
			if dp.name != "DNS" && allowed(m.netpols, stranger, dp.to, dp.port) {
				p.add("a pod of another namespace can reach %s %v on port %d", dp.name, dp.to, dp.port)
			}
		}
		if allowed(m.netpols, client, stranger, 443) {
			p.add("%s can reach anything (a pod of another namespace on 443)", name)
		}
		if allowed(m.netpols, stranger, client, client.ports["http"]) {
			p.add("a pod of another namespace can reach %s", name)
		}
		prom := pod{ns: "monitoring", labels: map[string]string{"app.kubernetes.io/name": "prometheus"}}
		if !allowed(m.netpols, prom, client, client.ports["http"]) {
			p.add("Prometheus (namespace monitoring) cannot scrape %s", name)
		}
	}
	if api := m.deployment("kvstack-api"); api != nil {
		edge := pod{ns: "ingress-nginx", labels: map[string]string{"app.kubernetes.io/name": "ingress-nginx"}}
		if !allowed(m.netpols, edge, podOf(api), s.port(t, "KV_API1_PORT")) {
			p.add("ingress-nginx cannot reach the API on port %d", s.port(t, "KV_API1_PORT"))
		}
	}
	// Every pod of ours a PodMonitor picks lets Prometheus in on its port.
	prom := pod{ns: "monitoring", labels: map[string]string{"app.kubernetes.io/name": "prometheus"}, ports: map[string]int32{"http-web": 9090}}
	for _, pm := range m.podMonitors {
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			for _, pd := range m.scrapeablePods() {
				port, ok := pd.ports[*ep.Port]
				if pd.ns == ns && ok && selects(&pm.Spec.Selector, pd.labels) && !allowed(m.netpols, prom, pd, port) {
					p.add("Prometheus cannot scrape %s's target %v on port %d", pm.Name, pd, port)
				}
			}
		}
	}
	// Jaeger's Monitor tab reads its spanmetrics back from Prometheus.
	if jaeger != nil && !allowed(m.netpols, podOf(jaeger), prom, 9090) {
		p.add("Jaeger cannot query Prometheus (monitoring) on 9090 for its Monitor tab")
	}
	if exp := m.deployment("kvstack-postgres-exporter"); exp != nil {
		for _, pg := range m.postgreses {
			to := pod{ns: ns, labels: map[string]string{postgresPodLabel: pg.Name}}
			if !allowed(m.netpols, podOf(exp), to, s.port(t, "PGPORT")) {
				p.add("the PostgreSQL exporter cannot reach %s on %d", pg.Name, s.port(t, "PGPORT"))
			}
		}
		if allowed(m.netpols, stranger, podOf(exp), podOf(exp).ports["metrics"]) {
			p.add("a pod of another namespace can reach the PostgreSQL exporter")
		}
	}
	for _, r := range m.rabbitmqs {
		broker := pod{ns: ns, labels: map[string]string{rabbitmqPodLabel: r.Name}}
		if !allowed(m.netpols, pod{ns: "keda", labels: map[string]string{"app": "keda-operator"}}, broker, s.port(t, "RABBITMQ_PORT")) {
			p.add("KEDA cannot read the queues' length from %s", r.Name)
		}
		if !allowed(m.netpols, pod{ns: "monitoring", labels: map[string]string{"app.kubernetes.io/name": "prometheus"}}, broker, s.port(t, "RABBITMQ_METRICS_PORT")) {
			p.add("Prometheus cannot scrape %s on %d", r.Name, s.port(t, "RABBITMQ_METRICS_PORT"))
		}
	}
	return p
}
