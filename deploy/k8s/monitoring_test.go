package k8s

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// target is one scrape job as the build defines it.
type target struct {
	job, path, port string
	params          map[string][]string
	selected        bool // its selector picks what it is meant to
}

func jobOf(relabelings []monitoringv1.RelabelConfig) string {
	for _, r := range relabelings {
		if r.TargetLabel == "job" && r.Replacement != nil {
			return *r.Replacement
		}
	}
	return ""
}

// targets lists the build's scrape jobs.
func (m *manifests) targets() []target {
	var out []target
	for _, sm := range m.serviceMonitors {
		for _, ep := range sm.Spec.Endpoints {
			tg := target{job: jobOf(ep.RelabelConfigs), path: ep.Path, port: ep.Port, params: ep.Params}
			for _, svc := range m.services {
				if selects(&sm.Spec.Selector, svc.Labels) {
					for _, sp := range svc.Spec.Ports {
						tg.selected = tg.selected || sp.Name == ep.Port
					}
				}
			}
			out = append(out, tg)
		}
	}
	pods := m.scrapeablePods()
	for _, pm := range m.podMonitors {
		namespaces := pm.Spec.NamespaceSelector.MatchNames
		if len(namespaces) == 0 && !pm.Spec.NamespaceSelector.Any {
			namespaces = []string{pm.Namespace}
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			port := ""
			if ep.Port != nil {
				port = *ep.Port
			}
			tg := target{job: jobOf(ep.RelabelConfigs), path: ep.Path, port: port, params: ep.Params}
			for _, pd := range pods {
				_, hasPort := pd.ports[port]
				inNS := pm.Spec.NamespaceSelector.Any || slices.Contains(namespaces, pd.ns)
				tg.selected = tg.selected || (inNS && hasPort && selects(&pm.Spec.Selector, pd.labels))
			}
			out = append(out, tg)
		}
	}
	return out
}

// edgeJobs are the jobs of the native edge (mtail, the nginx exporter).
// On Kubernetes the edge is the platform's Gateway, whose metrics each
// implementation names its own way; the chart maps none of them yet, so
// the SLOs and panels that read these jobs stay empty there (docs/KUBERNETES.md,
// "Observed as natively").
var edgeJobs = []string{"mtail", "nginx-exporter"}

// nativeOnlyJobs are the jobs of processes only the native stack runs: the
// pgBackRest backup scheduler of a stack with engines of its own
// (BackupTooOld reads it). On Kubernetes, CloudNativePG backs PostgreSQL up.
var nativeOnlyJobs = []string{"backups"}

// scrapeablePods are the pods a PodMonitor may pick: the Deployments' and
// the operators' (their labels and port names as each operator makes them).
func (m *manifests) scrapeablePods() []pod {
	ns := m.namespace()
	var out []pod
	for _, d := range m.deployments {
		p := podOf(d)
		p.ns = ns
		out = append(out, p)
	}
	for _, r := range m.rabbitmqs {
		out = append(out, pod{ns: ns, labels: map[string]string{rabbitmqPodLabel: r.Name}, ports: map[string]int32{"prometheus": 15692}})
	}
	for _, pg := range m.postgreses {
		out = append(out, pod{ns: ns, labels: map[string]string{postgresPodLabel: pg.Name}, ports: map[string]int32{postgresMetricsPort: postgresMetricsNum}})
	}
	redisPod := func(app string, e *RedisExporter) pod {
		p := pod{ns: ns, labels: map[string]string{redisPodLabel: app}, ports: map[string]int32{}}
		if e != nil && e.Enabled {
			p.ports[redisExporterPort] = int32(redisExporterDefault)
			if e.Port != nil {
				p.ports[redisExporterPort] = int32(*e.Port)
			}
		}
		return p
	}
	for _, r := range m.redises {
		out = append(out, redisPod(r.Name, r.Spec.RedisExporter))
	}
	for _, r := range m.redisClusters {
		out = append(out, redisPod(r.Name+"-leader", r.Spec.RedisExporter), redisPod(r.Name+"-follower", r.Spec.RedisExporter))
	}
	return out
}

// Prometheus scrapes what observability/prometheus.yml scrapes, under the
// same job names, paths and parameters, so the rules and the dashboard
// (which select by job) find their series; the rules are the rule files,
// the dashboards the dashboard files, Alertmanager's routing that of
// observability/alertmanager.yml.
func checkMonitoring(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	jobs := scrapeJobs(t)
	built := map[string]target{}
	for _, tg := range m.targets() {
		built[tg.job] = tg
		want, ok := jobs[tg.job]
		switch {
		case tg.job == "":
			p.add("a monitor endpoint (port %s) does not set the job label", tg.port)
		case !ok:
			p.add("job %s is not a job of observability/prometheus.yml", tg.job)
		case tg.path != want.Path || !reflect.DeepEqual(nilIfEmpty(tg.params), nilIfEmpty(want.Params)):
			p.add("job %s scrapes %s %v, observability/prometheus.yml %s %v", tg.job, tg.path, tg.params, want.Path, want.Params)
		}
		if !tg.selected {
			p.add("job %s: its selector finds no target with port %q", tg.job, tg.port)
		}
		if strings.HasPrefix(tg.job, "kv-") && !s.serves(tg.path) {
			p.add("job %s scrapes %s, which the binaries do not serve", tg.job, tg.path)
		}
	}
	// A managed engine is watched by its provider, not by kvstack's exporters.
	unscraped := append(slices.Clone(edgeJobs), nativeOnlyJobs...)
	if _, ok := m.external["rabbitmq"]; ok {
		unscraped = append(unscraped, "rabbitmq", "rabbitmq-node")
	}
	if _, ok := m.external["redis"]; ok {
		unscraped = append(unscraped, "redis-exporter")
	}
	for _, j := range queriedJobs(t) {
		if _, ok := built[j]; !ok && !slices.Contains(unscraped, j) {
			p.add("the rules or the dashboard query job %q, which no ServiceMonitor or PodMonitor scrapes", j)
		}
	}

	// Rules.
	var want []monitoringv1.RuleGroup
	for _, f := range globRepo(t, "observability/rules/*.yml") {
		var file struct {
			Groups []monitoringv1.RuleGroup `json:"groups"`
		}
		j, err := yaml.YAMLToJSON(readRepo(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if strict, err := kjson.UnmarshalStrict(j, &file); err != nil || len(strict) > 0 {
			p.add("%s does not decode into PrometheusRule groups: %v %v", f, err, strict)
		}
		want = append(want, withNamespace(file.Groups, m.namespace())...)
	}
	if len(m.rules) != 1 {
		p.add("want one PrometheusRule, have %d", len(m.rules))
	} else if got := m.rules[0].Spec.Groups; !reflect.DeepEqual(got, want) {
		p.add("PrometheusRule %s's groups differ from observability/rules/*.yml (chart/files/prometheus-rules.yaml: go test -run TestCopies -update)", m.rules[0].Name)
	}

	// Dashboards, for Grafana's sidecar.
	cm := m.configMap("kvstack-dashboards")
	if cm == nil || cm.Labels["grafana_dashboard"] != "1" {
		p.add("ConfigMap kvstack-dashboards with label grafana_dashboard=1 is missing")
	} else {
		files := globRepo(t, "grafana/dashboards/*.json")
		if len(cm.Data) != len(files) {
			p.add("ConfigMap %s holds %d dashboards, grafana/dashboards has %d", cm.Name, len(cm.Data), len(files))
		}
		for _, f := range files {
			if cm.Data[f[strings.LastIndex(f, "/")+1:]] != string(readRepo(t, f)) {
				p.add("ConfigMap %s: %s differs from %s", cm.Name, f[strings.LastIndex(f, "/")+1:], f)
			}
		}
	}
	if cm := m.configMap("kvstack-jaeger-config"); cm == nil || cm.Data["config.yaml"] != string(readRepo(t, "observability/jaeger.yaml")) {
		p.add("ConfigMap kvstack-jaeger-config differs from observability/jaeger.yaml")
	}
	p = append(p, checkAlertmanager(t, m)...)
	return p
}

func nilIfEmpty(m map[string][]string) map[string][]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// amRoute and amInhibit are Alertmanager routing in one shape, to compare
// observability/alertmanager.yml with the AlertmanagerConfig.
type amRoute struct {
	Receiver                                 string
	GroupBy, Matchers                        []string
	GroupWait, GroupInterval, RepeatInterval string
	Routes                                   []amRoute
}

type amInhibit struct{ Source, Target, Equal []string }

func checkAlertmanager(t testing.TB, m *manifests) problems {
	var p problems
	type fileRoute struct {
		Receiver       string      `json:"receiver"`
		GroupBy        []string    `json:"group_by"`
		GroupWait      string      `json:"group_wait"`
		GroupInterval  string      `json:"group_interval"`
		RepeatInterval string      `json:"repeat_interval"`
		Matchers       []string    `json:"matchers"`
		Routes         []fileRoute `json:"routes"`
	}
	var file struct {
		Route     fileRoute `json:"route"`
		Receivers []struct {
			Name           string `json:"name"`
			WebhookConfigs []struct {
				SendResolved bool `json:"send_resolved"`
			} `json:"webhook_configs"`
		} `json:"receivers"`
		InhibitRules []struct {
			Source []string `json:"source_matchers"`
			Target []string `json:"target_matchers"`
			Equal  []string `json:"equal"`
		} `json:"inhibit_rules"`
	}
	if err := yaml.Unmarshal(readRepo(t, "observability/alertmanager.yml"), &file); err != nil {
		t.Fatal(err)
	}
	var conv func(r fileRoute) amRoute
	conv = func(r fileRoute) amRoute {
		out := amRoute{Receiver: r.Receiver, GroupBy: r.GroupBy, GroupWait: r.GroupWait, GroupInterval: r.GroupInterval, RepeatInterval: r.RepeatInterval}
		for _, mt := range r.Matchers {
			out.Matchers = append(out.Matchers, normMatcher(mt))
		}
		for _, sub := range r.Routes {
			out.Routes = append(out.Routes, conv(sub))
		}
		return out
	}
	wantRoute := conv(file.Route)
	var wantInhibit []amInhibit
	for _, ir := range file.InhibitRules {
		w := amInhibit{Equal: ir.Equal}
		for _, mt := range ir.Source {
			w.Source = append(w.Source, normMatcher(mt))
		}
		for _, mt := range ir.Target {
			w.Target = append(w.Target, normMatcher(mt))
		}
		wantInhibit = append(wantInhibit, w)
	}

	if len(m.amConfigs) != 1 {
		p.add("want one AlertmanagerConfig, have %d", len(m.amConfigs))
		return p
	}
	ac := m.amConfigs[0]
	var convAC func(r *monitoringv1alpha1.Route) amRoute
	convAC = func(r *monitoringv1alpha1.Route) amRoute {
		out := amRoute{Receiver: r.Receiver, GroupBy: r.GroupBy, GroupWait: dur(r.GroupWait), GroupInterval: dur(r.GroupInterval), RepeatInterval: dur(r.RepeatInterval)}
		for _, mt := range r.Matchers {
			out.Matchers = append(out.Matchers, acMatcher(mt))
		}
		subs, err := r.ChildRoutes()
		if err != nil {
			p.add("AlertmanagerConfig %s: %v", ac.Name, err)
		}
		for i := range subs {
			out.Routes = append(out.Routes, convAC(&subs[i]))
		}
		return out
	}
	if ac.Spec.Route == nil {
		p.add("AlertmanagerConfig %s has no route", ac.Name)
		return p
	}
	if got := convAC(ac.Spec.Route); !reflect.DeepEqual(got, wantRoute) {
		p.add("AlertmanagerConfig %s routes\n  %+v\nobservability/alertmanager.yml routes\n  %+v", ac.Name, got, wantRoute)
	}
	var gotInhibit []amInhibit
	for _, ir := range ac.Spec.InhibitRules {
		g := amInhibit{Equal: ir.Equal}
		for _, mt := range ir.SourceMatch {
			g.Source = append(g.Source, acMatcher(mt))
		}
		for _, mt := range ir.TargetMatch {
			g.Target = append(g.Target, acMatcher(mt))
		}
		gotInhibit = append(gotInhibit, g)
	}
	if !reflect.DeepEqual(gotInhibit, wantInhibit) {
		p.add("AlertmanagerConfig %s inhibits %+v, observability/alertmanager.yml %+v", ac.Name, gotInhibit, wantInhibit)
	}
	for _, want := range file.Receivers {
		i := slices.IndexFunc(ac.Spec.Receivers, func(r monitoringv1alpha1.Receiver) bool { return r.Name == want.Name })
		if i < 0 || len(ac.Spec.Receivers[i].WebhookConfigs) != len(want.WebhookConfigs) {
			p.add("AlertmanagerConfig %s lacks receiver %s with %d webhooks", ac.Name, want.Name, len(want.WebhookConfigs))
			continue
		}
		for j, wh := range ac.Spec.Receivers[i].WebhookConfigs {
			if wh.URLSecret == nil || wh.URL != nil {
				p.add("receiver %s webhook %d: its URL must come from a Secret", want.Name, j)
			}
			if wh.SendResolved == nil || *wh.SendResolved != want.WebhookConfigs[j].SendResolved {
				p.add("receiver %s webhook %d: sendResolved %v, want %v", want.Name, j, wh.SendResolved, want.WebhookConfigs[j].SendResolved)
			}
		}
	}
	return p
}

func dur(d *monitoringv1.NonEmptyDuration) string {
	if d == nil {
		return ""
	}
	return string(*d)
}

var matcherRE = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$`)

func normMatcher(s string) string {
	m := matcherRE.FindStringSubmatch(s)
	if m == nil {
		return "unparsed:" + s
	}
	return m[1] + m[2] + m[3]
}

func acMatcher(mt monitoringv1alpha1.Matcher) string {
	op := string(mt.MatchType)
	if op == "" {
		op = "="
		if mt.Regex {
			op = "=~"
		}
	}
	return mt.Name + op + mt.Value
}
