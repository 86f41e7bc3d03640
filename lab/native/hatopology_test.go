package native_test

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/native"
)

func loadHA(t *testing.T, environ ...string) *native.Settings {
	t.Helper()
	s, err := native.Load("../..", append([]string{"KV_TOPOLOGY=ha", "KV_STACK_DIR=" + t.TempDir()}, environ...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The HA topology's services are its clusters, every node listed, and a
// node's port set in the environment moves that node everywhere.
func TestHASettingsDeriveTheServicesFromTheNodes(t *testing.T) {
	s := loadHA(t, "KV_HA_REDIS3_PORT=17102", "KV_HA_POSTGRES2_PORT=15442")
	ca, owner, admin := s.Get("KV_TLS_CA"), s.PostgresRoles().Owner.Password, s.Secret("RABBITMQ_ADMIN")
	for name, want := range map[string]string{
		// Every link the stack's own, locked: its passwords, verified TLS.
		"DATABASE_URL":         "postgres://kvstack:" + owner + "@127.0.0.1:5441,127.0.0.1:15442/kvstack?sslmode=verify-full&sslrootcert=" + ca + "&target_session_attrs=read-write",
		"REDIS_ADDR":           "rediss://127.0.0.1:7000,rediss://127.0.0.1:7001,rediss://127.0.0.1:17102,rediss://127.0.0.1:7003,rediss://127.0.0.1:7004,rediss://127.0.0.1:7005",
		"RABBITMQ_URL":         "amqps://kvstack_admin:" + admin + "@127.0.0.1:5681/,amqps://kvstack_admin:" + admin + "@127.0.0.1:5682/,amqps://kvstack_admin:" + admin + "@127.0.0.1:5683/",
		"REDIS_TLS_CA_FILE":    ca,
		"RABBITMQ_TLS_CA_FILE": ca,
	} {
		if got := s.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	nodes := s.HANodes()
	if len(nodes.RabbitMQ) != 3 || len(nodes.Redis) != 6 || len(nodes.Postgres) != 2 {
		t.Fatalf("nodes %+v", nodes)
	}
	if n := nodes.Redis[2]; n.Name != "redis3" || n.Port != 17102 || n.ExporterPort != 9124 {
		t.Errorf("redis3 = %+v", n)
	}
	if n := nodes.RabbitMQ[1]; n.Name != "rabbitmq2" || n.Port != 5682 || n.DistPort != 25682 || n.MetricsPort != 15792 {
		t.Errorf("rabbitmq2 = %+v", n)
	}
	// An address set by the caller wins over the derived one.
	if got := loadHA(t, "REDIS_ADDR=10.0.0.1:7000").Get("REDIS_ADDR"); got != "10.0.0.1:7000" {
		t.Errorf("REDIS_ADDR set by the caller: %q", got)
	}
	if !s.HA() || !s.PrivateEngines() {
		t.Error("the HA topology runs its own engines")
	}
	single, err := native.Load("../..", nil)
	if err != nil {
		t.Fatal(err)
	}
	if single.HA() || strings.Contains(single.Get("DATABASE_URL"), ",") {
		t.Errorf("the single-node topology: HA %v, DATABASE_URL %s", single.HA(), single.Get("DATABASE_URL"))
	}
	if _, err := native.Load("../..", []string{"KV_TOPOLOGY=ha", "KV_HA_REDIS2_PORT=60000"}); err == nil || !strings.Contains(err.Error(), "bus") {
		t.Errorf("a Redis node whose cluster bus port would be past 65535: %v, want an error", err)
	}
	if _, err := native.Load("../..", []string{"KV_TOPOLOGY=double"}); err == nil || !strings.Contains(err.Error(), "KV_TOPOLOGY") {
		t.Errorf("KV_TOPOLOGY=double: %v, want an error naming it", err)
	}
	if d := s.Describe(); !strings.Contains(d, "target_session_attrs=read-write") || !strings.Contains(d, "KV_HA_REDIS6_PORT") {
		t.Error("make env shows neither the HA defaults nor the nodes' ports")
	}
}

// No two ports of stack.env are the same: both topologies' processes, and
// every node of the HA one, listen at once on one machine (the HA
// topology reuses the edge's and the observability's, not the engines').
func TestStackEnvPortsAreDistinct(t *testing.T) {
	s := loadHA(t)
	seen := map[string]string{}
	for _, a := range s.File {
		if !strings.HasSuffix(a.Name, "PORT") {
			continue
		}
		if other, dup := seen[a.Value]; dup {
			t.Errorf("%s and %s are both %s", other, a.Name, a.Value)
		}
		seen[a.Value] = a.Name
	}
	// The second consumer's (KV_CONSUMER_PORT + 1) and each Redis
	// node's cluster bus (port + 10000) too.
	c, _ := strconv.Atoi(s.Get("KV_CONSUMER_PORT"))
	extra := map[string]int{"consumer2": c + 1}
	for _, n := range s.HANodes().Redis {
		extra[n.Name+" bus"] = n.Port + 10000
	}
	for what, p := range extra {
		if other, dup := seen[strconv.Itoa(p)]; dup {
			t.Errorf("%s's port %d is %s", what, p, other)
		}
	}
}

// The HA topology runs both consumers and an exporter per PostgreSQL and
// Redis node, each reading its node alone.
func TestHAProcesses(t *testing.T) {
	s := loadHA(t)
	byName := map[string]supervisor.Program{}
	for _, p := range native.Processes(s) {
		if _, dup := byName[p.Name]; dup {
			t.Errorf("two programs named %s", p.Name)
		}
		byName[p.Name] = p
	}
	for _, name := range []string{"api1", "api2", "consumer", "consumer2", "nginx", "prometheus", "alertmanager", "jaeger",
		"mtail", "nginx-exporter", "postgres-exporter1", "postgres-exporter2", "redis-exporter1", "redis-exporter6"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	for _, name := range []string{"postgres-exporter", "redis-exporter"} {
		if _, ok := byName[name]; ok {
			t.Errorf("the single-node topology's %s runs in the HA one", name)
		}
	}
	if got := byName["consumer2"].Addr; got != "127.0.0.1:8091" {
		t.Errorf("consumer2 on %s", got)
	}
	if env := byName["consumer2"].Env; env["REDIS_ADDR"] != s.Get("REDIS_ADDR") || env["KV_INSTANCE_ID"] != "consumer2" {
		t.Errorf("consumer2's environment %v", env)
	}
	wantTargets := map[string]string{
		"postgres-exporter2": "postgres://kvstack_monitor:" + s.PostgresRoles().Monitor.Password + "@127.0.0.1:5442/kvstack?" +
			url.Values{"sslmode": {"verify-full"}, "sslrootcert": {s.Get("KV_TLS_CA")}}.Encode(),
		"redis-exporter4": "rediss://127.0.0.1:7003",
	}
	for _, e := range native.Exporters(s) {
		if want, ok := wantTargets[e.Name]; ok && e.Target != want {
			t.Errorf("%s reads %s, want %s", e.Name, e.Target, want)
		}
	}
	if got := byName["redis-exporter4"].Addr; got != "127.0.0.1:9125" {
		t.Errorf("redis-exporter4 listens on %s", got)
	}
}

func TestExpandTargets(t *testing.T) {
	in := `scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["${A}"]
        labels: { instance_id: a1 }
  - job_name: b
    static_configs:
      - targets: ["${B}"]
  - job_name: c
    static_configs:
      - targets: ["${C}"]
`
	got := native.ExpandTargets(in, map[string][]native.ScrapeTarget{
		"A": {{Addr: "h:1", Labels: []native.Label{{"instance_id", "a1"}}}, {Addr: "h:2", Labels: []native.Label{{"instance_id", "a2"}}}},
		"B": {{Addr: "h:3", Labels: []native.Label{{"node", "b1"}, {"role", "x"}}}, {Addr: "h:4"}},
	})
	want := `scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["h:1"]
        labels: { instance_id: a1 }
      - targets: ["h:2"]
        labels: { instance_id: a2 }
  - job_name: b
    static_configs:
      - targets: ["h:3"]
        labels: { node: b1, role: x }
      - targets: ["h:4"]
  - job_name: c
    static_configs:
      - targets: ["${C}"]
`
	if got != want {
		t.Errorf("ExpandTargets:\n%s\nwant\n%s", got, want)
	}
}

// The HA topology's prometheus.yml scrapes every node of every engine,
// each target labelled with its node, both consumers, and nothing of the
// single-node topology's engines; promtool accepts it.
func TestRenderHAPrometheusScrapesEveryNode(t *testing.T) {
	s := loadHA(t)
	configs, _, err := native.Render(s)
	if err != nil {
		t.Fatal(err)
	}
	var prom native.Rendered
	for _, c := range configs {
		if c.Program == "prometheus" {
			prom = c
		}
	}
	jobs := scrapeTargets(prom.Text)
	nodes := s.HANodes()
	want := map[string][]string{
		"kv-consumer":       {"127.0.0.1:8190 instance_id: consumer1", "127.0.0.1:8191 instance_id: consumer2"},
		"rabbitmq":          nil,
		"rabbitmq-node":     nil,
		"postgres-exporter": nil,
		"redis-exporter":    nil,
		"patroni":           nil,
	}
	for _, n := range nodes.RabbitMQ {
		for _, job := range []string{"rabbitmq", "rabbitmq-node"} {
			want[job] = append(want[job], "127.0.0.1:"+strconv.Itoa(n.MetricsPort)+" node: "+n.Name)
		}
	}
	for _, n := range nodes.Postgres {
		want["postgres-exporter"] = append(want["postgres-exporter"], "127.0.0.1:"+strconv.Itoa(n.ExporterPort)+" node: "+n.Name)
		want["patroni"] = append(want["patroni"], "127.0.0.1:"+strconv.Itoa(n.RestPort)+" node: "+n.Name)
	}
	for _, n := range nodes.Redis {
		want["redis-exporter"] = append(want["redis-exporter"], "127.0.0.1:"+strconv.Itoa(n.ExporterPort)+" node: "+n.Name)
	}
	for job, targets := range want {
		if got := strings.Join(jobs[job], "; "); got != strings.Join(targets, "; ") {
			t.Errorf("job %s scrapes\n  %s\nwant\n  %s", job, got, strings.Join(targets, "; "))
		}
	}
	if got := jobs["kv-api"]; len(got) != 2 {
		t.Errorf("kv-api scrapes %v", got)
	}
	for _, single := range []string{"RABBITMQ_METRICS_PORT", "KV_POSTGRES_EXPORTER_PORT", "KV_REDIS_EXPORTER_PORT"} {
		if addr := s.Addr(single); strings.Contains(prom.Text, addr) {
			t.Errorf("the HA prometheus.yml scrapes %s (%s), the single-node topology's", addr, single)
		}
	}
	// Patroni's REST API serves TLS alone: scraped over https, its
	// certificate verified against the stack's CA.
	patroni := prom.Text[strings.Index(prom.Text, "- job_name: patroni"):]
	if i := strings.Index(patroni[1:], "- job_name:"); i >= 0 {
		patroni = patroni[:i+1]
	}
	for _, want := range []string{"scheme: https\n", "ca_file: " + strconv.Quote(s.Get("KV_TLS_CA")) + "\n"} {
		if !strings.Contains(patroni, want) {
			t.Errorf("job patroni lacks %q:\n%s", want, patroni)
		}
	}
	file := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(file, []byte(prom.Text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "config", "--syntax-only", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check config (promtool from make setup-all): %v\n%s", err, out)
	}
}

var (
	jobLine    = regexp.MustCompile(`^\s+- job_name: (\S+)`)
	targetLine = regexp.MustCompile(`^\s+- targets: \["([^"]+)"\]`)
	labelsLine = regexp.MustCompile(`^\s+labels: \{ (.*) \}`)
)

// scrapeTargets reads a rendered prometheus.yml's static targets by job,
// each "addr labels".
func scrapeTargets(text string) map[string][]string {
	jobs := map[string][]string{}
	job := ""
	for _, line := range strings.Split(text, "\n") {
		if m := jobLine.FindStringSubmatch(line); m != nil {
			job = m[1]
		} else if m := targetLine.FindStringSubmatch(line); m != nil {
			jobs[job] = append(jobs[job], m[1])
		} else if m := labelsLine.FindStringSubmatch(line); m != nil && len(jobs[job]) > 0 {
			jobs[job][len(jobs[job])-1] += " " + m[1]
		}
	}
	return jobs
}
