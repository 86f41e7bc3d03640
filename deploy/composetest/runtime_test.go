package composetest

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// The checks below catch what only shows when the containers run: each was
// a defect found by reading the compose file against the images (issue 11).
// Each takes the repository as a tree, so that TestChecksCatchBrokenCopies
// can show it failing on a broken copy.

// tree is the repository as a check sees it: the real files, some of them
// replaced by broken copies (files: repository-relative path → content),
// and the compose file its checks load (docker-compose.yml when empty).
type tree struct {
	compose string
	files   map[string]string
}

func (tr tree) composeFile() string {
	if tr.compose == "" {
		return "docker-compose.yml"
	}
	return tr.compose
}

func (tr tree) read(t *testing.T, rel string) []byte {
	t.Helper()
	if s, ok := tr.files[rel]; ok {
		return []byte(s)
	}
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// project is the tree's compose file, loaded with the test's secrets.
func (tr tree) project(t *testing.T) *types.Project {
	t.Helper()
	file := tr.composeFile()
	s, ok := tr.files[file]
	if !ok {
		return mustLoadFile(t, file)
	}
	path := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := loadPath(t, path, secretsOf(file))
	if err != nil {
		t.Fatalf("broken copy does not load: %v", err)
	}
	return p
}

// check returns what is wrong with a tree, one sentence per problem.
type check func(t *testing.T, tr tree) []string

var runtimeChecks = map[string]check{
	"postgres probed over TCP":          checkTCPProbe,
	"restart: true where read at start": checkRestartEdges,
	"alert webhook not loopback":        checkWebhookDefault,
	"builder image matches go.mod":      checkBuilderTag,
	"probe binaries in their images":    checkProbeBinaries,
	"env names read by the binaries":    checkEnvNames,
	"promtool check config":             checkPrometheusConfig,
	"promtool check rules":              checkPrometheusRules,
	"amtool check-config":               checkAlertmanagerConfig,
	"nginx -t":                          checkNginxConfig,
	"jaeger validate":                   checkJaegerConfig,
}

func TestRuntimeDefects(t *testing.T) {
	for _, file := range composeFiles {
		for name, c := range runtimeChecks {
			t.Run(file+"/"+name, func(t *testing.T) {
				for _, problem := range c(t, tree{compose: file}) {
					t.Error(problem)
				}
			})
		}
	}
}

// Each check fails on a copy of the repository that has the defect it is
// there to catch.
func TestChecksCatchBrokenCopies(t *testing.T) {
	tests := []struct {
		name, check, file, old, new string
		want                        string // part of the problem reported
	}{
		{"nginx's certificate not mounted", "nginx -t", "docker-compose.yml",
			"NGINX_TLS_CERT: /etc/nginx/tls/edge.pem", "NGINX_TLS_CERT: /etc/nginx/edge.pem", "which no volume mounts"},
		{"socket probe", "postgres probed over TCP", "docker-compose.yml",
			`"-h", "127.0.0.1", `, ``, "Unix socket"},
		{"socket directory probe", "postgres probed over TCP", "docker-compose.yml",
			`"-h", "127.0.0.1"`, `"-h", "/var/run/postgresql"`, "Unix socket"},
		{"nginx keeps api1's old address", "restart: true where read at start", "docker-compose.yml",
			"      api1:\n        condition: service_healthy\n        restart: true\n", "      api1:\n        condition: service_healthy\n", "nginx depends on api1 without restart: true"},
		{"alertmanager keeps its old config", "restart: true where read at start", "docker-compose.yml",
			"      - alertmanager-data:/alertmanager\n    depends_on:\n      render-config:\n        condition: service_completed_successfully\n        restart: true",
			"      - alertmanager-data:/alertmanager\n    depends_on:\n      render-config:\n        condition: service_completed_successfully",
			"alertmanager depends on render-config without restart: true"},
		{"webhook is alertmanager itself", "alert webhook not loopback", "docker-compose.yml",
			"http://alert-webhook.invalid/alerts", "http://127.0.0.1:9/alerts", "Alertmanager itself"},
		{"floating builder", "builder image matches go.mod", "Dockerfile",
			"golang:1.26.8-alpine", "golang:1.26-alpine", "floats"},
		{"builder older than go.mod", "builder image matches go.mod", "Dockerfile",
			"golang:1.26.8-alpine", "golang:1.26.7-alpine", "older than"},
		{"go.mod ahead of the builder", "builder image matches go.mod", "go.mod",
			"\ngo 1.26.8\n", "\ngo 1.27.1\n", "older than"},
		{"probe the image lacks", "probe binaries in their images", "docker-compose.yml",
			`test: ["CMD", "/kvstack/healthcheck", "http://127.0.0.1:8081/readyz"]`, `test: ["CMD", "wget", "-q", "-O", "-", "http://127.0.0.1:8081/readyz"]`, "api1: healthcheck runs wget"},
		{"probe the Dockerfile stops building", "probe binaries in their images", "Dockerfile",
			" ./tools/healthcheck", "", "/kvstack/healthcheck"},
		{"shell probe on distroless", "probe binaries in their images", "docker-compose.yml",
			`test: ["CMD", "/kvstack/healthcheck", "http://127.0.0.1:8090/readyz"]`, `test: ["CMD-SHELL", "/kvstack/healthcheck http://127.0.0.1:8090/readyz"]`, "consumer: healthcheck runs /bin/sh"},
		{"a variable no binary reads", "env names read by the binaries", "docker-compose.yml",
			"      KV_INSTANCE_ID: api1\n", "      KV_INSTANCE_ID: api1\n      KV_MAX_BODY: \"1048576\"\n", "api1 sets KV_MAX_BODY"},
		{"a misspelt listen address", "env names read by the binaries", "docker-compose.yml",
			"      KV_CONSUMER_ADDR: 0.0.0.0:8090", "      KV_CONSUMER_ADRESS: 0.0.0.0:8090", "consumer does not set KV_CONSUMER_ADDR"},
		{"redis left at its loopback default", "env names read by the binaries", "docker-compose.yml",
			"  REDIS_ADDR: rediss://redis:6379\n", "", "api2 does not set REDIS_ADDR"},
		{"traces sent to the container itself", "env names read by the binaries", "docker-compose.yml",
			"  OTEL_EXPORTER_OTLP_ENDPOINT: http://jaeger:4318\n", "", "does not set OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"prometheus config", "promtool check config", "observability/prometheus.yml",
			"scrape_configs:", "scrape_configs:\n  - job_name: broken\n    scrape_interval: soon\n", "promtool check config"},
		{"envsubst list misses a variable", "promtool check config", "docker-compose.yml",
			"envsubst '$${API1_ADMIN_ADDR} ", "envsubst '", "${API1_ADMIN_ADDR}"},
		{"alert rule", "promtool check rules", "observability/rules/kvstack-alerts.yml",
			"expr: ", "expr: sum(( ", "promtool check rules"},
		{"alertmanager route", "amtool check-config", "observability/alertmanager.yml",
			"  receiver: webhook\n", "  receiver: nobody\n", "amtool check-config"},
		{"nginx directive", "nginx -t", "nginx/nginx.conf.template",
			"server_tokens off;", "server_tokens sometimes;", "nginx -t"},
		{"nginx variable compose does not give", "nginx -t", "docker-compose.yml",
			"      NGINX_RATE_BURST: ${NGINX_RATE_BURST:-1000}\n", "", "nginx -t"},
		{"jaeger pipeline", "jaeger validate", "observability/jaeger.yaml",
			"processors: [batch]", "processors: [batchy]", "jaeger validate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			catches(t, runtimeChecks[tt.check], "docker-compose.yml", tt.file, tt.old, tt.new, tt.want)
		})
	}
}

// catches fails unless c, run on the repository with compose file compose
// and with old replaced by new in file, reports a problem containing want.
func catches(t *testing.T, c check, compose, file, old, new, want string) {
	t.Helper()
	real := string(tree{}.read(t, file))
	if !strings.Contains(real, old) {
		t.Fatalf("%s no longer holds %q: update the test", file, old)
	}
	broken := tree{compose: compose, files: map[string]string{file: strings.Replace(real, old, new, 1)}}
	problems := c(t, broken)
	for _, p := range problems {
		if strings.Contains(p, want) {
			t.Logf("caught: %s", p)
			return
		}
	}
	t.Errorf("the check on the broken copy: problems %q, want one containing %q", problems, want)
}

// The postgres image's entrypoint initialises a new database on a temporary
// server that listens on the Unix socket only (docker-library/postgres,
// docker-entrypoint.sh, with listen_addresses empty). A probe of the socket calls
// that server healthy before any container can connect over TCP.
// Every service of the postgres image is probed so.
func checkTCPProbe(t *testing.T, tr tree) []string {
	var problems []string
	p := tr.project(t)
	found := false
	for _, name := range sorted(p.ServiceNames()) {
		s := service(t, p, name)
		// The image's, or a node Patroni runs (the HA file's), whose
		// pg_hba.conf has no socket line.
		if !strings.HasPrefix(s.Image, "postgres:") && env(s, "PATRONI_NAME") == "" {
			continue
		}
		found = true
		hc := s.HealthCheck
		if hc == nil || len(hc.Test) < 2 {
			problems = append(problems, name+" has no healthcheck")
			continue
		}
		if host := flagValue(hc.Test, "-h", "--host"); host == "" || strings.HasPrefix(host, "/") {
			problems = append(problems, name+": healthcheck "+strings.Join(hc.Test, " ")+
				" probes the Unix socket, where the entrypoint's init server answers before TCP is up: use -h 127.0.0.1")
		}
	}
	if !found {
		problems = append(problems, "no service runs PostgreSQL")
	}
	return problems
}

// flagValue is the value of a command-line flag given as "-h v", "-hv",
// "--host v" or "--host=v".
func flagValue(args []string, short, long string) string {
	for i, a := range args {
		switch {
		case (a == short || a == long) && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, long+"="):
			return strings.TrimPrefix(a, long+"=")
		case strings.HasPrefix(a, short) && len(a) > len(short) && !strings.HasPrefix(a, "--"):
			return strings.TrimPrefix(a, short)
		}
	}
	return ""
}

// restartEdges are the depends_on edges whose dependency a service reads
// only at start, with why: nginx resolves the upstream names of its
// environment once, and a service that mounts a volume a one-shot writes
// reads what it wrote once. Each needs restart: true, so that compose
// restarts the service when it recreates or restarts the dependency.
func restartEdges(t *testing.T, p *types.Project) map[[2]string]string {
	edges := map[[2]string]string{}
	for _, v := range service(t, p, "nginx").Environment {
		if v == nil {
			continue
		}
		host, _, _ := strings.Cut(*v, ":")
		if _, err := p.GetService(host); err == nil {
			edges[[2]string{"nginx", host}] = "nginx resolves " + host + " once, at start"
		}
	}
	for name, s := range p.Services {
		if s.Restart != "no" {
			continue
		}
		for _, w := range s.Volumes {
			if w.Type != types.VolumeTypeVolume || w.ReadOnly {
				continue
			}
			for reader, r := range p.Services {
				for _, v := range r.Volumes {
					if reader != name && v.Type == types.VolumeTypeVolume && v.Source == w.Source {
						edges[[2]string{reader, name}] = reader + " reads what " + name + " writes into volume " + w.Source + " at start"
					}
				}
			}
		}
	}
	return edges
}

func checkRestartEdges(t *testing.T, tr tree) []string {
	p := tr.project(t)
	var problems []string
	for edge, why := range restartEdges(t, p) {
		if dep, ok := service(t, p, edge[0]).DependsOn[edge[1]]; !ok || !dep.Restart {
			problems = append(problems, edge[0]+" depends on "+edge[1]+" without restart: true; "+why)
		}
	}
	slices.Sort(problems)
	return problems
}

// The edges are found from the file itself; these are the ones it has.
func TestRestartEdgesFound(t *testing.T) {
	var got []string
	for edge := range restartEdges(t, mustLoad(t)) {
		got = append(got, edge[0]+"->"+edge[1])
	}
	want := []string{"alertmanager->render-config", "nginx->api1", "nginx->api2", "prometheus->render-config"}
	if slices.Sort(got); !slices.Equal(got, want) {
		t.Errorf("edges read at start = %v, want %v", got, want)
	}
}

// render-config renders Alertmanager's webhook into its config; inside the
// alertmanager container loopback is Alertmanager itself.
func checkWebhookDefault(t *testing.T, tr tree) []string {
	p := tr.project(t)
	raw := env(service(t, p, "render-config"), "ALERT_WEBHOOK_URL")
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return []string{"render-config: default ALERT_WEBHOOK_URL " + raw + " is not a URL"}
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || host == "alertmanager" || ip != nil && ip.IsLoopback() {
		return []string{"render-config: default ALERT_WEBHOOK_URL " + raw + " points at Alertmanager itself"}
	}
	return nil
}
