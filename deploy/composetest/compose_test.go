package composetest

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/kvstack/kvstack/lab/native"
)

// root is the repository, two levels up.
var root = func() string {
	r, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return r
}()

// secrets are the variables compose requires; the test gives each a value
// that must not appear anywhere else in the file.
var secrets = map[string]string{
	"POSTGRES_PASSWORD":      "pg-secret-for-test",
	"RABBITMQ_PASSWORD":      "mq-secret-for-test",
	"GRAFANA_ADMIN_PASSWORD": "grafana-secret-for-test",
	"KV_MESSAGE_KEYS":        "message-key-secret-for-test-of-32-bytes",
}

// roleSecrets are the passwords of each process's own users and roles in
// docker-compose.yml (docs/SECURITY.md, least privilege), and of the
// superuser no service uses.
var roleSecrets = map[string]string{
	"POSTGRES_SUPERUSER_PASSWORD": "pg-superuser-secret-for-test",
	"POSTGRES_APP_PASSWORD":       "pg-app-secret-for-test",
	"POSTGRES_MONITOR_PASSWORD":   "pg-monitor-secret-for-test",
	"RABBITMQ_API_PASSWORD":       "mq-api-secret-for-test",
	"RABBITMQ_CONSUMER_PASSWORD":  "mq-consumer-secret-for-test",
	"REDIS_APP_PASSWORD":          "redis-app-secret-for-test",
	"REDIS_MONITOR_PASSWORD":      "redis-monitor-secret-for-test",
}

// haSecrets are what docker-compose.ha.yml requires besides
// roleSecrets: the Erlang cookie its RabbitMQ nodes share, the standby's
// replication password, Patroni's REST API user's, the Redis Cluster
// one-shot's.
var haSecrets = map[string]string{
	"RABBITMQ_ERLANG_COOKIE":        "cookie-secret-for-test",
	"POSTGRES_REPLICATION_PASSWORD": "replication-secret-for-test",
	"PATRONI_API_PASSWORD":          "patroni-api-secret-for-test",
	"REDIS_CLUSTER_PASSWORD":        "redis-cluster-secret-for-test",
}

// fileSecrets are lab/compose.FileSecrets' values: in the rendered files
// only.
var fileSecrets = map[string]string{"REDIS_REPLICA_PASSWORD": "redis-replica-secret-for-test"}

// composeFiles are the topologies in compose: one node of each engine, and
// the HA topology (docker-compose.ha.yml). The checks that hold for any
// compose file of the project run on both.
var composeFiles = []string{"docker-compose.yml", "docker-compose.ha.yml"}

// secretsOf are the variables file requires, with the test's values.
func secretsOf(file string) map[string]string {
	all := maps.Clone(secrets)
	maps.Copy(all, roleSecrets)
	if file == "docker-compose.ha.yml" {
		maps.Copy(all, haSecrets)
	}
	return all
}

// loadPath loads a compose file (the repository's, or a broken copy of it)
// as if it stood at the repository's root.
func loadPath(t *testing.T, path string, env map[string]string) (*types.Project, error) {
	t.Helper()
	var vars []string
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(
		[]string{path},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(vars), // not the developer's environment, nor .env
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func mustLoad(t *testing.T) *types.Project {
	t.Helper()
	return mustLoadFile(t, "docker-compose.yml")
}

// mustLoadFile loads one of composeFiles with the secrets it requires.
func mustLoadFile(t *testing.T, file string) *types.Project {
	t.Helper()
	p, err := loadPath(t, filepath.Join(root, file), secretsOf(file))
	if err != nil {
		t.Fatalf("%s does not load: %v", file, err)
	}
	return p
}

// stackEnv is stack.env as written, the native stack's list of ports, read
// by the native stack's own parser.
func stackEnv(t *testing.T) map[string]string {
	t.Helper()
	as, err := native.ReadEnvFile(filepath.Join(root, native.EnvFile))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, a := range as {
		vars[a.Name] = a.Value
	}
	return vars
}

// nativeTemplateVars is the variable list the native stack renders src with.
func nativeTemplateVars(t *testing.T, src string) []string {
	t.Helper()
	for _, tm := range native.Templates {
		if tm.Src == src {
			return tm.Vars
		}
	}
	t.Fatalf("the native stack renders no %s", src)
	return nil
}

// templateVars lists the ${NAME}s of a template file.
func templateVars(t *testing.T, rel string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).FindAllSubmatch(data, -1) {
		seen[string(m[1])] = true
	}
	return sortedKeys(seen)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func env(s types.ServiceConfig, name string) string {
	if v, ok := s.Environment[name]; ok && v != nil {
		return *v
	}
	return ""
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

// kvstackImageName is the image of the kvstack services (api, consumer,
// migrate), which the repository's Dockerfile builds.
const kvstackImageName = "kvstack:local"

// oneShots run to completion; every other service runs for good.
var oneShots = []string{"migrate", "render-config", "redis-cluster"}

// unprobed are the services whose image holds nothing but their program
// (FROM scratch: no shell, no HTTP client), so no healthcheck can run in
// them. All are exporters: Prometheus scrapes each (ExporterDown), and
// nothing waits on their health. The HA topology's redis-exporterN are
// redis-exporter's.
var unprobed = []string{"mtail", "nginx-exporter", "redis-exporter"}

func isUnprobed(name string) bool {
	return slices.Contains(unprobed, strings.TrimRight(name, "0123456789"))
}

func TestServices(t *testing.T) {
	p := mustLoad(t)
	want := []string{
		"alertmanager", "api1", "api2", "consumer", "grafana", "jaeger", "migrate", "mtail",
		"nginx", "nginx-exporter", "nginx-logrotate", "postgres", "postgres-exporter", "prometheus", "rabbitmq",
		"redis", "redis-exporter", "render-config",
	}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Errorf("services = %v, want %v", sorted(got), want)
	}
	// Every process of the native stack has its service.
	for _, name := range native.ProcessNames {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("native stack runs %s, compose has no such service", name)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func TestHealthchecks(t *testing.T) {
	for _, file := range composeFiles {
		t.Run(file, func(t *testing.T) { checkHealthchecks(t, mustLoadFile(t, file)) })
	}
}

func checkHealthchecks(t *testing.T, p *types.Project) {
	for name, s := range p.Services {
		if slices.Contains(oneShots, name) {
			if s.Restart != "no" {
				t.Errorf("%s runs once: restart = %q, want no", name, s.Restart)
			}
			continue
		}
		hc := s.HealthCheck
		switch {
		case isUnprobed(name):
			if hc == nil || !hc.Disable {
				t.Errorf("%s: healthcheck %v; its image has no program to probe with: disable it, or take it off unprobed", name, hc)
			}
			if bins := imageBinaries[s.Image]; slices.Contains(bins, "wget") || slices.Contains(bins, "sh") {
				t.Errorf("%s is unprobed, but its image %s could run a healthcheck (%v)", name, s.Image, bins)
			}
			for other, o := range p.Services {
				if _, ok := o.DependsOn[name]; ok {
					t.Errorf("%s waits on %s, which has no healthcheck", other, name)
				}
			}
		case hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] == "NONE":
			t.Errorf("%s has no healthcheck", name)
		}
		if s.Restart != "unless-stopped" {
			t.Errorf("%s: restart = %q, want unless-stopped", name, s.Restart)
		}
	}
}

func TestDependsOnConditions(t *testing.T) {
	for _, file := range composeFiles {
		for name, s := range mustLoadFile(t, file).Services {
			for dep, d := range s.DependsOn {
				want := types.ServiceConditionHealthy
				if slices.Contains(oneShots, dep) {
					want = types.ServiceConditionCompletedSuccessfully
				}
				if d.Condition != want {
					t.Errorf("%s: %s depends on %s with condition %q, want %q", file, name, dep, d.Condition, want)
				}
			}
		}
	}
	p := mustLoad(t)
	needs := map[string][]string{
		"migrate":      {"postgres", "rabbitmq"},
		"api1":         {"migrate", "postgres", "redis", "rabbitmq"},
		"api2":         {"migrate", "postgres", "redis", "rabbitmq"},
		"consumer":     {"migrate", "postgres", "redis", "rabbitmq"},
		"nginx":        {"api1", "api2"},
		"prometheus":   {"render-config"},
		"alertmanager": {"render-config"},
		"grafana":      {"prometheus", "jaeger"},
		// stub_status answers once nginx does; the exporter lives in
		// nginx's network namespace, so it must follow nginx's restarts.
		"nginx-exporter": {"nginx"},
		// kvstack's queries read kv_store.
		"postgres-exporter": {"postgres", "migrate"},
		"redis-exporter":    {"redis"},
	}
	for name, deps := range needs {
		s := service(t, p, name)
		for _, dep := range deps {
			if _, ok := s.DependsOn[dep]; !ok {
				t.Errorf("%s does not depend on %s", name, dep)
			}
		}
	}
}

// Only nginx and the UIs are published, on loopback, on the native stack's
// ports; nothing else (PostgreSQL, Redis, RabbitMQ, the replicas) is.
func TestPublishedPorts(t *testing.T) {
	for _, file := range composeFiles {
		t.Run(file, func(t *testing.T) { checkPublishedPorts(t, mustLoadFile(t, file)) })
	}
}

func checkPublishedPorts(t *testing.T, p *types.Project) {
	ports := stackEnv(t)
	want := map[string]string{
		"nginx":      ports["KV_NGINX_PORT"],
		"grafana":    ports["KV_GRAFANA_PORT"],
		"jaeger":     ports["KV_JAEGER_UI_PORT"],
		"prometheus": ports["KV_PROMETHEUS_PORT"],
	}
	for name, s := range p.Services {
		wantPort, published := want[name]
		if !published {
			if len(s.Ports) > 0 {
				t.Errorf("%s publishes %v; only %v may", name, s.Ports, sortedKeys(want))
			}
			continue
		}
		if len(s.Ports) != 1 {
			t.Errorf("%s publishes %d ports, want 1", name, len(s.Ports))
			continue
		}
		pc := s.Ports[0]
		if pc.HostIP != "127.0.0.1" {
			t.Errorf("%s is published on %q, want 127.0.0.1", name, pc.HostIP)
		}
		if pc.Published != wantPort || strconv.Itoa(int(pc.Target)) != wantPort {
			t.Errorf("%s publishes %s:%d, want %s:%s as in stack.env", name, pc.Published, pc.Target, wantPort, wantPort)
		}
	}
}

// amqpsPort is RabbitMQ's AMQP-over-TLS port in compose
// (deploy/compose/rabbitmq.conf), where the native stack's shared broker
// serves plain AMQP on stack.env's RABBITMQ_PORT.
const amqpsPort = "5671"

// The containers listen and find each other on the ports of stack.env, so
// the rendered configs and every address match the native stack.
func TestSamePortsAsNativeStack(t *testing.T) {
	p := mustLoad(t)
	ports := stackEnv(t)
	checks := []struct {
		service, variable, want string
	}{
		{"api1", "KV_HTTP_ADDR", "0.0.0.0:" + ports["KV_API1_PORT"]},
		{"api2", "KV_HTTP_ADDR", "0.0.0.0:" + ports["KV_API2_PORT"]},
		{"consumer", "KV_CONSUMER_ADDR", "0.0.0.0:" + ports["KV_CONSUMER_PORT"]},
		{"api1", "KV_ADMIN_ADDR", "0.0.0.0:" + ports["KV_API1_ADMIN_PORT"]},
		{"api2", "KV_ADMIN_ADDR", "0.0.0.0:" + ports["KV_API2_ADMIN_PORT"]},
		{"consumer", "KV_ADMIN_ADDR", "0.0.0.0:" + ports["KV_CONSUMER_ADMIN_PORT"]},
		{"api1", "KV_INSTANCE_ID", "api1"},
		{"api2", "KV_INSTANCE_ID", "api2"},
		{"consumer", "KV_INSTANCE_ID", "consumer1"},
		{"api1", "REDIS_ADDR", "rediss://redis:" + ports["REDIS_PORT"]},
		{"api1", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:" + ports["KV_JAEGER_OTLP_HTTP_PORT"]},
		{"nginx", "NGINX_LISTEN", ports["KV_NGINX_PORT"]},
		{"nginx", "API1_ADDR", "api1:" + ports["KV_API1_PORT"]},
		{"nginx", "API2_ADDR", "api2:" + ports["KV_API2_PORT"]},
		{"nginx", "KV_MAX_BODY_BYTES", "1048576"},
		{"render-config", "API1_ADMIN_ADDR", "api1:" + ports["KV_API1_ADMIN_PORT"]},
		{"render-config", "API2_ADMIN_ADDR", "api2:" + ports["KV_API2_ADMIN_PORT"]},
		{"render-config", "CONSUMER_ADMIN_ADDR", "consumer:" + ports["KV_CONSUMER_ADMIN_PORT"]},
		{"render-config", "RABBITMQ_METRICS_ADDR", "rabbitmq:" + ports["RABBITMQ_METRICS_PORT"]},
		{"render-config", "PROMETHEUS_ADDR", "prometheus:" + ports["KV_PROMETHEUS_PORT"]},
		{"render-config", "ALERTMANAGER_ADDR", "alertmanager:" + ports["KV_ALERTMANAGER_PORT"]},
		{"jaeger", "JAEGER_UI_PORT", ports["KV_JAEGER_UI_PORT"]},
		{"jaeger", "JAEGER_OTLP_GRPC_PORT", ports["KV_JAEGER_OTLP_GRPC_PORT"]},
		{"jaeger", "JAEGER_OTLP_HTTP_PORT", ports["KV_JAEGER_OTLP_HTTP_PORT"]},
	}
	for _, c := range checks {
		if got := env(service(t, p, c.service), c.variable); got != c.want {
			t.Errorf("%s: %s = %q, want %q", c.service, c.variable, got, c.want)
		}
	}
	for _, s := range []string{"api1", "api2", "consumer", "migrate"} {
		for name, want := range map[string]string{
			"DATABASE_URL": "@postgres:" + ports["PGPORT"] + "/",
			// AMQPS: RabbitMQ's TLS port, in place of stack.env's plain one.
			"RABBITMQ_URL": "@rabbitmq:" + amqpsPort + "/",
		} {
			if got := env(service(t, p, s), name); !strings.Contains(got, want) {
				t.Errorf("%s: %s = %q, want it to contain %q", s, name, got, want)
			}
		}
	}
	flags := map[string]string{
		"prometheus":   "--web.listen-address=0.0.0.0:" + ports["KV_PROMETHEUS_PORT"],
		"alertmanager": "--web.listen-address=0.0.0.0:" + ports["KV_ALERTMANAGER_PORT"],
	}
	for name, flag := range flags {
		if !slices.Contains(service(t, p, name).Command, flag) {
			t.Errorf("%s: command %v lacks %s", name, service(t, p, name).Command, flag)
		}
	}
	// Any process that reaches it (a web page, by CSRF) could POST /-/quit.
	if cmd := service(t, p, "prometheus").Command; slices.Contains(cmd, "--web.enable-lifecycle") {
		t.Errorf("prometheus: command %v enables the lifecycle API", cmd)
	}
	for name, port := range map[string]string{
		"api1": ports["KV_API1_PORT"], "api2": ports["KV_API2_PORT"], "consumer": ports["KV_CONSUMER_PORT"],
		"nginx": ports["KV_NGINX_PORT"], "prometheus": ports["KV_PROMETHEUS_PORT"],
		"alertmanager": ports["KV_ALERTMANAGER_PORT"], "jaeger": ports["KV_JAEGER_UI_PORT"],
	} {
		if hc := service(t, p, name).HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), ":"+port+"/") {
			t.Errorf("%s: healthcheck does not probe port %s", name, port)
		}
	}
}

// Each template gets every variable it uses, in both stacks: the nginx
// image substitutes only the variables it is given.
func TestTemplateVariablesProvided(t *testing.T) {
	p := mustLoad(t)
	nginxVars := templateVars(t, "nginx/nginx.conf.template")
	if got := sorted(nativeTemplateVars(t, "nginx/nginx.conf.template")); !slices.Equal(got, nginxVars) {
		t.Errorf("the native stack renders nginx with %v, the template uses %v", got, nginxVars)
	}
	nginx := service(t, p, "nginx")
	for _, v := range nginxVars {
		if env(nginx, v) == "" {
			t.Errorf("nginx service does not set %s, which the template uses", v)
		}
	}

	render := service(t, p, "render-config")
	script := strings.Join(render.Command, " ")
	for _, tmpl := range []string{"observability/prometheus.yml", "observability/alertmanager.yml"} {
		vars := templateVars(t, tmpl)
		if got := sorted(nativeTemplateVars(t, tmpl)); !slices.Equal(got, vars) {
			t.Errorf("the native stack renders %s with %v, it uses %v", tmpl, got, vars)
		}
		for _, v := range vars {
			if env(render, v) == "" {
				t.Errorf("render-config does not set %s (used by %s)", v, tmpl)
			}
			if !strings.Contains(script, "${"+v+"}") {
				t.Errorf("render-config's envsubst list lacks ${%s} (used by %s)", v, tmpl)
			}
		}
	}
}

// The files compose mounts exist in the repository, mounted where the
// images read them; data lives in named volumes.
func TestMounts(t *testing.T) {
	p := mustLoad(t)
	want := map[string]map[string]string{ // service -> target -> source (repo-relative)
		"render-config": {"/templates/prometheus.yml": "observability/prometheus.yml", "/templates/alertmanager.yml": "observability/alertmanager.yml"},
		"prometheus":    {"/etc/prometheus/rules": "observability/rules"},
		"jaeger":        {"/etc/jaeger/config.yaml": "observability/jaeger.yaml"},
		"rabbitmq":      {"/etc/rabbitmq/enabled_plugins": "observability/rabbitmq/enabled_plugins"},
		"grafana":       {"/etc/grafana/provisioning": "grafana/provisioning", "/etc/grafana/dashboards": "grafana/dashboards"},
		// Where the exporters' commands (lab/native's) find them, with
		// the repository at /kvstack: TestExportersInStep.
		"mtail":             {"/kvstack/observability/mtail": "observability/mtail"},
		"postgres-exporter": {"/kvstack/observability/postgres-exporter/queries.yml": "observability/postgres-exporter/queries.yml"},
		"nginx": {"/etc/nginx/templates/nginx.conf.template": "nginx/nginx.conf.template",
			"/etc/nginx/tls/edge.pem": generatedEdgeCert, "/etc/nginx/tls/edge-key.pem": generatedEdgeKey},
		"api1": {"/etc/kvstack/auth/policy.yaml": "deploy/auth/policy.yaml", "/etc/kvstack/auth/jwks.json": generatedJWKS},
		"api2": {"/etc/kvstack/auth/policy.yaml": "deploy/auth/policy.yaml", "/etc/kvstack/auth/jwks.json": generatedJWKS},
	}
	for _, file := range composeFiles {
		checkBindMounts(t, file, mustLoadFile(t, file))
	}
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			rel, _ := filepath.Rel(root, v.Source)
			if src, ok := want[name][v.Target]; ok && src == rel {
				delete(want[name], v.Target)
			}
		}
	}
	for name, missing := range want {
		for target, src := range missing {
			t.Errorf("%s does not mount %s at %s", name, src, target)
		}
	}
	for _, dir := range []string{"grafana/provisioning/datasources", "grafana/provisioning/dashboards"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil || len(entries) == 0 {
			t.Errorf("%s is missing or empty: %v", dir, err)
		}
	}

	data := map[string]string{
		"postgres": "/var/lib/postgresql/data", "redis": "/data", "rabbitmq": "/var/lib/rabbitmq",
		"prometheus": "/prometheus", "alertmanager": "/alertmanager", "grafana": "/var/lib/grafana",
	}
	for name, target := range data {
		found := false
		for _, v := range service(t, p, name).Volumes {
			if v.Type == types.VolumeTypeVolume && v.Target == target {
				found = true
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s uses volume %s, not declared", name, v.Source)
				}
			}
		}
		if !found {
			t.Errorf("%s keeps %s outside a named volume", name, target)
		}
	}
}

// The mounts not in the repository: the public key set of the local
// stack's signing key, which `make token` makes on its first run, the
// edge's certificate and key and the CA, which `make tls` makes
// (lab/native), and the engines' certificates and users, which `make
// compose-secrets` makes (lab/compose).
const (
	generatedJWKS     = ".stack/auth/jwks.json"
	generatedEdgeCert = ".stack/tls/" + native.EdgeFile
	generatedEdgeKey  = ".stack/tls/" + native.EdgeKeyFile
	generatedCA       = ".stack/tls/" + native.CAFile
	generatedCompose  = ".stack/compose/"
)

var generated = []string{generatedJWKS, generatedEdgeCert, generatedEdgeKey, generatedCA}

// isGenerated: rel is made by make token, make tls or make compose-secrets.
func isGenerated(rel string) bool {
	return slices.Contains(generated, rel) || strings.HasPrefix(rel, generatedCompose)
}

// checkBindMounts: what a compose file mounts from the repository exists,
// and is mounted read-only.
func checkBindMounts(t *testing.T, file string, p *types.Project) {
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if !v.ReadOnly {
				t.Errorf("%s: %s mounts %s read-write", file, name, v.Source)
			}
			if rel, _ := filepath.Rel(root, v.Source); isGenerated(rel) {
				if v.Bind == nil || v.Bind.CreateHostPath {
					t.Errorf("%s: %s mounts %s, which make token or make tls makes, without create_host_path: false: a missing one would mount as an empty directory", file, name, rel)
				}
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: %s mounts %s, which is not in the repository: %v", file, name, v.Source, err)
			}
		}
	}
}

// No password has a default: without them compose refuses to load, and the
// values given end up only where they belong.
func TestNoDefaultSecrets(t *testing.T) {
	for _, file := range composeFiles {
		all := secretsOf(file)
		for missing := range all {
			env := maps.Clone(all)
			delete(env, missing)
			if _, err := loadPath(t, filepath.Join(root, file), env); err == nil || !strings.Contains(err.Error(), missing) {
				t.Errorf("%s without %s: load error %v, want one naming it", file, missing, err)
			}
		}
	}
	p := mustLoad(t)
	// The image's superuser's, and the roles' its first start makes
	// (deploy/compose/postgres-roles.sh).
	for name, secret := range map[string]string{
		"POSTGRES_PASSWORD":         "POSTGRES_SUPERUSER_PASSWORD",
		"POSTGRES_OWNER_PASSWORD":   "POSTGRES_PASSWORD",
		"POSTGRES_APP_PASSWORD":     "POSTGRES_APP_PASSWORD",
		"POSTGRES_MONITOR_PASSWORD": "POSTGRES_MONITOR_PASSWORD",
	} {
		if got := env(service(t, p, "postgres"), name); got != secretsOf("docker-compose.yml")[secret] {
			t.Errorf("postgres: %s = %q, want %s's value", name, got, secret)
		}
	}
	// RabbitMQ's users come from the definitions file (lab/compose), not
	// the image's default user.
	for _, name := range []string{"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"} {
		if got := env(service(t, p, "rabbitmq"), name); got != "" {
			t.Errorf("rabbitmq: %s = %q: the image would make that user an administrator", name, got)
		}
	}
	if got := env(service(t, p, "grafana"), "GF_SECURITY_ADMIN_PASSWORD"); got != secrets["GRAFANA_ADMIN_PASSWORD"] {
		t.Errorf("grafana password = %q", got)
	}
	for _, name := range []string{"api1", "api2", "consumer"} {
		if got := env(service(t, p, name), "KV_MESSAGE_KEYS"); got != secrets["KV_MESSAGE_KEYS"] {
			t.Errorf("%s's KV_MESSAGE_KEYS = %q, want the secret", name, got)
		}
	}
	example, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range maps.Collect(func(yield func(string, string) bool) {
		for _, f := range composeFiles {
			for k, v := range secretsOf(f) {
				if !yield(k, v) {
					return
				}
			}
		}
	}) {
		if !regexp.MustCompile(`(?m)^` + k + `=$`).Match(example) {
			t.Errorf(".env.example must list %s= with no value", k)
		}
	}
}

// The kvstack services run the image the Dockerfile builds; it builds the
// services' binaries of cmd/ statically, and runs them as a non-root user.
func TestDockerfile(t *testing.T) {
	p := mustLoad(t)
	raw, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", len(froms))
	}
	final := froms[len(froms)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static or scratch", final)
	}
	lastStage := df[strings.LastIndex(df, "\nFROM "):]
	if m := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(lastStage); m == nil || strings.HasPrefix(m[1], "root") || strings.HasPrefix(m[1], "0") {
		t.Errorf("final stage USER = %v, want a non-root user", m)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w"`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile does not build with %s", want)
		}
	}
	// The services' binaries (lab/cmd/kvbench and other tools stay out).
	for _, bin := range []string{"api", "consumer", "migrate"} {
		if _, err := os.Stat(filepath.Join(root, "cmd", bin)); err != nil {
			t.Errorf("cmd/%s: %v", bin, err)
		}
		if !strings.Contains(df, "./cmd/"+bin) {
			t.Errorf("Dockerfile does not build ./cmd/%s", bin)
		}
	}
	for name, bin := range map[string]string{"migrate": "migrate", "api1": "api", "api2": "api", "consumer": "consumer"} {
		s := service(t, p, name)
		if s.Build == nil || s.Build.Dockerfile != "Dockerfile" || s.Image != "kvstack:local" {
			t.Errorf("%s: build %+v image %q, want the repository's Dockerfile as kvstack:local", name, s.Build, s.Image)
		}
		if want := []string{"/kvstack/" + bin}; !slices.Equal(s.Command, want) {
			t.Errorf("%s: command %v, want %v", name, s.Command, want)
		}
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	for _, need := range []string{"!go.mod", "!go.sum", "!cmd/", "!internal/", "!migrations/"} {
		if !strings.Contains(string(ignore), need) {
			t.Errorf(".dockerignore keeps out %s, which the build needs", strings.TrimPrefix(need, "!"))
		}
	}
}
