package native_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/lab/native"
)

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     []native.Assignment
		err      string
	}{
		{"assignments, comments and blanks", "# ports\n\nA_PORT=1\n  B=x=y  \n#C=3\n", []native.Assignment{{"A_PORT", "1"}, {"B", "x=y"}}, ""},
		{"empty value", "A=\n", []native.Assignment{{"A", ""}}, ""},
		{"lower-case name", "a=1\n", nil, `line 1: "a=1" is not NAME=VALUE`},
		{"no equals sign", "A=1\nB\n", nil, `line 2: "B" is not NAME=VALUE`},
		{"space before the sign", "A =1\n", nil, "line 1"},
		{"given twice", "A=1\nA=2\n", nil, "line 2: A already set on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := native.ParseEnvFile(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseEnvFile = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// repo is a scratch repository holding only a stack.env.
func repo(t *testing.T, env string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, native.EnvFile), []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const ports = `KV_NGINX_PORT=8080
KV_NGINX_STATUS_PORT=8079
KV_API1_PORT=8081
KV_API2_PORT=8082
KV_CONSUMER_PORT=8090
KV_API1_ADMIN_PORT=8181
KV_API2_ADMIN_PORT=8182
KV_CONSUMER_ADMIN_PORT=8190
KV_PROMETHEUS_PORT=9090
KV_ALERTMANAGER_PORT=9093
KV_JAEGER_UI_PORT=16686
KV_JAEGER_OTLP_GRPC_PORT=4317
KV_JAEGER_OTLP_HTTP_PORT=4318
KV_JAEGER_QUERY_GRPC_PORT=16685
KV_JAEGER_HEALTH_PORT=13133
KV_JAEGER_METRICS_PORT=8889
KV_MTAIL_PORT=3903
KV_NGINX_EXPORTER_PORT=9113
KV_BACKUP_PORT=9446
KV_POSTGRES_EXPORTER_PORT=9187
KV_REDIS_EXPORTER_PORT=9121
PGPORT=5432
REDIS_PORT=6379
RABBITMQ_PORT=5672
RABBITMQ_METRICS_PORT=15692
RABBITMQ_DIST_PORT=25672
`

func TestLoadOverlaysTheEnvironment(t *testing.T) {
	root := repo(t, ports)
	s, err := native.Load(root, []string{"KV_NGINX_PORT=18080", "PGPORT=", "KV_BIND_HOST=127.0.0.2", "LOG_LEVEL=debug"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"KV_NGINX_PORT":    "18080", // the environment wins
		"PGPORT":           "5432",  // unless empty
		"NGINX_LISTEN":     "127.0.0.2:18080",
		"DATABASE_URL":     "postgres://kvstack:kvstack@127.0.0.2:5432/kvstack?sslmode=disable",
		"KV_STACK_TIMEOUT": "60",
		"KV_STACK_DIR":     root + "/.stack",
	} {
		if got := s.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if s.Dir != filepath.Join(root, ".stack") || s.BinDir != filepath.Join(root, "bin") {
		t.Errorf("Dir %s, BinDir %s", s.Dir, s.BinDir)
	}
	if got := s.File[0]; got != (native.Assignment{Name: "KV_NGINX_PORT", Value: "8080"}) {
		t.Errorf("File[0] = %v, want stack.env as written", got)
	}
}

func TestLoadRejects(t *testing.T) {
	for name, c := range map[string]struct {
		env     string
		environ []string
		want    string
	}{
		"a port that is not one": {ports, []string{"KV_API1_PORT=eighty"}, "KV_API1_PORT"},
		"a bad timeout":          {ports, []string{"KV_STOP_TIMEOUT=5s"}, "KV_STOP_TIMEOUT"},
		"a bad KV_ALERT_FOR":     {ports, []string{"KV_ALERT_FOR=soon"}, "KV_ALERT_FOR"},
		"a bad KV_ENGINES":       {ports, []string{"KV_ENGINES=both"}, "KV_ENGINES"},
		"a port missing":         {"KV_NGINX_PORT=1\n", nil, "PGPORT"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := native.Load(repo(t, c.env), c.environ)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load = %v, want an error naming %s", err, c.want)
			}
		})
	}
}

// The repository's stack.env loads, and names every port the topology uses.
func TestRepositoryStackEnv(t *testing.T) {
	s, err := native.Load("../..", nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range s.File {
		names = append(names, a.Name)
	}
	for _, want := range strings.Fields(ports) {
		name, _, _ := strings.Cut(want, "=")
		if !slices.Contains(names, name) {
			t.Errorf("stack.env lacks %s", name)
		}
	}
}

// The nginx body limit and the API's are one figure; the API's default is
// in internal/httpapi's envDefault tag (config.Vars lists it).
func TestMaxBodyBytesIsTheAPIsDefault(t *testing.T) {
	s, err := native.Load(repo(t, ports), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Vars[config.API]() {
		if v.Name == "KV_MAX_BODY_BYTES" {
			if got := s.Get(v.Name); got != v.Default {
				t.Fatalf("KV_MAX_BODY_BYTES default %s, the API's is %s", got, v.Default)
			}
			return
		}
	}
	t.Fatal("the API reads no KV_MAX_BODY_BYTES")
}

// Every variable the binaries read passes through from the caller's
// environment to them.
func TestAppVariablesPassThrough(t *testing.T) {
	var environ []string
	for _, v := range append(config.Vars[config.API](), config.Vars[config.Consumer]()...) {
		environ = append(environ, v.Name+"=from-the-caller")
	}
	s, err := native.Load(repo(t, ports), environ)
	if err != nil {
		t.Fatal(err)
	}
	api := native.Select(native.Processes(s), "api1")[0]
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "KV_HTTP_ADDR", "KV_INSTANCE_ID", "KV_CONSUMER_ADDR", "KV_ADMIN_ADDR":
			continue // the stack's own, per process
		}
		if _, ok := api.Env[name]; !ok {
			t.Errorf("%s (read by the binaries) does not reach api1", name)
		}
	}
}

// The stack makes its message key on first use, in KV_STACK_DIR, keeps it,
// and gives it to the APIs and consumers; KV_MESSAGE_KEYS in the
// environment wins.
func TestMessageKeyMadeOnceAndShared(t *testing.T) {
	dir := t.TempDir()
	s, err := native.Load("../..", []string{"KV_STACK_DIR=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, native.MessageKeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want it made, mode 0600", info, err)
	}
	var keys []string
	for _, p := range native.Processes(s) {
		if p.Name == "api1" || p.Name == "api2" || p.Name == "consumer" {
			keys = append(keys, p.Env["KV_MESSAGE_KEYS"])
		}
	}
	if len(keys) != 3 || len(keys[0]) < 32 || keys[1] != keys[0] || keys[2] != keys[0] {
		t.Fatalf("KV_MESSAGE_KEYS of api1, api2, consumer = %q; want one key of 32 bytes or more", keys)
	}
	again, err := native.Load("../..", []string{"KV_STACK_DIR=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := native.Consumer(again, 2).Env["KV_MESSAGE_KEYS"]; got != keys[0] {
		t.Errorf("after a restart the key is %q, want the kept %q", got, keys[0])
	}
	mine, err := native.Load("../..", []string{"KV_STACK_DIR=" + dir, "KV_MESSAGE_KEYS=mine"})
	if err != nil {
		t.Fatal(err)
	}
	if got := native.Consumer(mine, 1).Env["KV_MESSAGE_KEYS"]; got != "mine" {
		t.Errorf("with KV_MESSAGE_KEYS set the consumer gets %q, want it", got)
	}
}

// Least privilege: the replicas and the consumer connect as the app's
// role, the PostgreSQL exporter as the monitor's; only migrate (Migrate's
// test) has the owner's URL. The replicas' RabbitMQ user is the
// publisher's, the consumers' the consumer's.
func TestEachProcessHasItsOwnCredentials(t *testing.T) {
	for _, topology := range []string{"single", "ha"} {
		s, err := native.Load("../..", []string{"KV_TOPOLOGY=" + topology, "KV_STACK_DIR=" + t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range native.Processes(s) {
			if mq, ok := p.Env["RABBITMQ_URL"]; ok {
				want := "amqp://kvstack_consumer:"
				if strings.HasPrefix(p.Name, "api") {
					want = "amqp://kvstack_api:"
				}
				if topology == "ha" { // the stack's own broker: AMQPS alone
					want = strings.Replace(want, "amqp://", "amqps://", 1)
				}
				if !strings.HasPrefix(mq, want) {
					t.Errorf("%s: %s's RabbitMQ URL %s, want %s…", topology, p.Name, mq, want)
				}
			}
			url, ok := p.Env["DATABASE_URL"]
			if target := p.Env["DATA_SOURCE_NAME"]; target != "" {
				url, ok = target, true
			}
			if !ok {
				continue
			}
			want := "postgres://kvstack_app:"
			if strings.HasPrefix(p.Name, "postgres-exporter") {
				want = "postgres://kvstack_monitor:"
			}
			if !strings.HasPrefix(url, want) {
				t.Errorf("%s: %s's PostgreSQL URL %s, want %s…", topology, p.Name, url, want)
			}
		}
		owner := native.Credential{User: "kvstack", Password: "kvstack"}
		if topology == "ha" { // the stack's own engines: its passwords
			owner.Password = s.Secret("PG_OWNER")
		}
		if r := s.PostgresRoles(); r.Owner != owner || r.App.User != "kvstack_app" || r.Monitor.User != "kvstack_monitor" {
			t.Errorf("%s: roles %+v", topology, r)
		}
	}
}

// The shared Redis is the machine's: no ACL user. The stack's own Redis
// has two, and the replicas, the consumers and the exporter use them.
func TestRedisUsersOnlyOnTheStacksOwnRedis(t *testing.T) {
	for _, c := range []struct {
		environ []string
		want    string
	}{
		{[]string{"KV_ENGINES=shared"}, ""},
		{[]string{"KV_ENGINES=private"}, "kvstack_app"},
		{[]string{"KV_TOPOLOGY=ha"}, "kvstack_app"},
	} {
		s, err := native.Load("../..", append(c.environ, "KV_STACK_DIR="+t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range native.Processes(s) {
			if strings.HasPrefix(p.Name, "api") || strings.HasPrefix(p.Name, "consumer") {
				if got := p.Env["REDIS_USERNAME"]; got != c.want || (c.want != "" && p.Env["REDIS_PASSWORD"] == "") {
					t.Errorf("%v: %s's REDIS_USERNAME %q, want %q (and a password)", c.environ, p.Name, got, c.want)
				}
			}
			if strings.HasPrefix(p.Name, "redis-exporter") && (p.Env["REDIS_USER"] != "") != (c.want != "") {
				t.Errorf("%v: %s's user %q", c.environ, p.Name, p.Env["REDIS_USER"])
			}
		}
	}
}
