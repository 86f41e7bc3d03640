package native_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/native"
)

// Every exporter runs in the topology and is scraped where it listens:
// Prometheus' job of its kind targets its address, mtail reads the access
// log nginx writes, and the nginx exporter the stub_status nginx serves.
func TestExportersInTheTopology(t *testing.T) {
	s, err := native.Load("../..", []string{"KV_STACK_DIR=" + t.TempDir(), "KV_MTAIL_PORT=13903"})
	if err != nil {
		t.Fatal(err)
	}
	configs, _, err := native.Render(s)
	if err != nil {
		t.Fatal(err)
	}
	rendered := map[string]string{}
	for _, c := range configs {
		rendered[c.Program] = c.Text
	}
	programs := native.Processes(s)
	kinds := map[native.ExporterKind]bool{}
	for _, e := range native.Exporters(s) {
		kinds[e.Kind] = true
		if !slices.Contains(native.ProcessNames, e.Name) || len(native.Select(programs, e.Name)) != 1 {
			t.Errorf("exporter %s is not a process of the topology", e.Name)
		}
		job := regexp.MustCompile(`(?m)^\s+- job_name: ` + regexp.QuoteMeta(string(e.Kind)) +
			`\n(?:\s+#.*\n)*\s+static_configs:\n\s+- targets: \["([^"]+)"\]`)
		m := job.FindStringSubmatch(rendered["prometheus"])
		if m == nil || m[1] != e.Listen {
			t.Errorf("%s listens on %s; Prometheus' job %s scrapes %v", e.Name, e.Listen, e.Kind, m)
		}
	}
	if len(kinds) != 4 {
		t.Errorf("exporter kinds %v, want one of each of the four", kinds)
	}
	byKind := func(k native.ExporterKind) native.Exporter {
		for _, e := range native.Exporters(s) {
			if e.Kind == k {
				return e
			}
		}
		t.Fatalf("no %s", k)
		return native.Exporter{}
	}
	if got, want := byKind(native.Mtail).Target, s.Get("NGINX_ACCESS_LOG"); got != want {
		t.Errorf("mtail reads %s, nginx writes its access log to %s", got, want)
	}
	if !strings.Contains(rendered["nginx"], "listen "+s.Get("NGINX_STATUS_LISTEN")+";") ||
		byKind(native.NginxExporter).Target != "http://"+s.Get("NGINX_STATUS_LISTEN")+"/stub_status" {
		t.Errorf("the nginx exporter reads %s; nginx serves stub_status on %s", byKind(native.NginxExporter).Target, s.Get("NGINX_STATUS_LISTEN"))
	}
	if got := s.Get("MTAIL_ADDR"); got != "127.0.0.1:13903" {
		t.Errorf("MTAIL_ADDR = %s: it follows KV_MTAIL_PORT", got)
	}
}

// A second exporter of a kind (a standby's, a cluster node's) is one more
// value: its own program, log, port and target, nothing else to write.
func TestAnExporterPerNode(t *testing.T) {
	s, err := native.Load("../..", []string{"KV_STACK_DIR=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dsn := "postgres://kvstack:kvstack@127.0.0.1:5433/kvstack?sslmode=disable"
	e := native.Exporter{Kind: native.PostgresExporter, Name: "postgres-exporter-standby1", Listen: "127.0.0.1:9188", Target: dsn}
	p := e.Program(s)
	if p.Name != e.Name || p.Log != s.LogFile(e.Name) || p.Addr != e.Listen {
		t.Errorf("program %s, log %s, addr %s", p.Name, p.Log, p.Addr)
	}
	if h, ok := p.Health.(supervisor.HTTPProbe); !ok || h.Addr != e.Listen || h.Path != "/metrics" {
		t.Errorf("health %v, want /metrics on %s", p.Health, e.Listen)
	}
	if p.Env["DATA_SOURCE_NAME"] != dsn || strings.Contains(strings.Join(p.Command, " "), "kvstack:kvstack@") {
		t.Errorf("the DSN must reach the exporter in its environment only: env %v, command %v", p.Env, p.Command)
	}
	if !slices.Contains(p.Command, "--web.listen-address="+e.Listen) {
		t.Errorf("command %v does not listen on %s", p.Command, e.Listen)
	}
	r := native.Exporter{Kind: native.RedisExporter, Name: "redis-exporter-7001", Listen: "127.0.0.1:9122", Target: "redis://127.0.0.1:7001"}.Program(s)
	if !slices.Contains(r.Command, "redis://127.0.0.1:7001") || !slices.Contains(r.Command, "127.0.0.1:9122") {
		t.Errorf("redis exporter command %v", r.Command)
	}
}
