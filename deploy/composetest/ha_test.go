package composetest

import (
	"fmt"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/kvstack/kvstack/lab/native"
)

// docker-compose.ha.yml, besides what every compose file is checked for
// (compose_test.go, runtime_test.go: schema, probes, variables the
// binaries read, promtool, amtool, nginx -t, jaeger validate): the HA
// topology itself. Each check takes a tree, so that TestHAChecksCatch
// shows it failing on a broken copy.

const haFile = "docker-compose.ha.yml"

var haTree = tree{compose: haFile}

// nodes are the services of the HA file whose names are prefix and a
// number, in order (rabbitmq1…3).
func nodes(p *types.Project, prefix string) []string {
	var out []string
	for _, name := range sorted(p.ServiceNames()) {
		if n := strings.TrimPrefix(name, prefix); n != name && n != "" && strings.Trim(n, "0123456789") == "" {
			out = append(out, name)
		}
	}
	return out
}

var haChecks = map[string]check{
	"engines clustered":   checkHAEngines,
	"app finds each node": checkHAAppEnv,
	"every node scraped":  checkHAScrapes,
}

func TestHA(t *testing.T) {
	p := mustLoadFile(t, haFile)
	for prefix, want := range map[string]int{"rabbitmq": 3, "redis": 6, "postgres": 2, "etcd": 3, "api": 2,
		"postgres-exporter": 2, "redis-exporter": 6} {
		if got := nodes(p, prefix); len(got) != want {
			t.Errorf("%s: %v, want %d", prefix, got, want)
		}
	}
	// The nodes of `make up-ha`, under the same names.
	settings, err := native.Load(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range settings.HANodes().Names() {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("make up-ha runs node %s, %s has no such service", name, haFile)
		}
	}
	for _, name := range []string{"consumer", "consumer2", "redis-cluster", "migrate", "nginx", "mtail", "nginx-exporter",
		"render-config", "prometheus", "alertmanager", "jaeger", "grafana"} {
		service(t, p, name)
	}
	for name, c := range haChecks {
		t.Run(name, func(t *testing.T) {
			for _, problem := range c(t, haTree) {
				t.Error(problem)
			}
		})
	}
}

// checkHAEngines: three RabbitMQ nodes that list each other as peers and
// share a cookie; six Redis Cluster nodes that the one-shot makes one
// cluster with a replica per master; PostgreSQL nodes run by Patroni on
// an etcd cluster (checkHAPostgres). The engines are docker-compose.yml's
// images (PostgreSQL's release in the image built for Patroni), and each
// node keeps its data in a volume of its own.
func checkHAEngines(t *testing.T, tr tree) []string {
	p := tr.project(t)
	single := mustLoad(t)
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	volumes := map[string]string{}
	dataIn := func(name, target string) {
		v := volumeAt(service(t, p, name), target)
		switch {
		case v == nil:
			bad("%s keeps %s outside a named volume", name, target)
		case volumes[v.Source] != "":
			bad("%s and %s share volume %s", name, volumes[v.Source], v.Source)
		default:
			volumes[v.Source] = name
		}
	}
	engine := map[string]string{"rabbitmq": "rabbitmq", "redis": "redis"}
	for prefix, base := range engine {
		for _, name := range nodes(p, prefix) {
			if got, want := service(t, p, name).Image, service(t, single, base).Image; got != want {
				bad("%s runs %s, docker-compose.yml's %s runs %s", name, got, base, want)
			}
		}
	}

	var peers []string
	listedBy := map[string][]string{}
	for _, name := range nodes(p, "rabbitmq") {
		s := service(t, p, name)
		peers = append(peers, "rabbit@"+s.Hostname)
		if env(s, "RABBITMQ_ERLANG_COOKIE") != haSecrets["RABBITMQ_ERLANG_COOKIE"] {
			bad("%s does not take the shared Erlang cookie (RABBITMQ_ERLANG_COOKIE)", name)
		}
		if s.Hostname != name {
			bad("%s: hostname %q, want its name: the node is rabbit@<hostname>", name, s.Hostname)
		}
		conf := string(tr.read(t, bindSource(t, s, "/etc/rabbitmq/conf.d/20-kvstack-cluster.conf")))
		listed := regexp.MustCompile(`(?m)^cluster_formation\.classic_config\.nodes\.\d+\s*=\s*(\S+)`).FindAllStringSubmatch(conf, -1)
		for _, m := range listed {
			listedBy[name] = append(listedBy[name], m[1])
		}
		if !strings.Contains(conf, "cluster_formation.peer_discovery_backend = classic_config") {
			bad("%s: its configuration does not use classic_config peer discovery", name)
		}
		dataIn(name, "/var/lib/rabbitmq")
	}
	for _, name := range nodes(p, "rabbitmq") {
		if got := listedBy[name]; !slices.Equal(sorted(got), sorted(peers)) {
			bad("%s lists peers %v, the nodes are %v", name, got, peers)
		}
	}

	redis := nodes(p, "redis")
	for _, name := range redis {
		s := service(t, p, name)
		cmd := strings.Join(s.Command, " ")
		if !strings.Contains(cmd, "--cluster-announce-hostname "+name) {
			bad("%s: command %q does not announce its name", name, cmd)
		}
		conf := ""
		if len(s.Command) > 1 {
			conf = string(tr.read(t, bindSource(t, s, s.Command[1])))
		}
		for _, want := range []string{"cluster-enabled yes", "cluster-config-file /data/"} {
			if !strings.Contains(conf, "\n"+want) {
				bad("%s: its configuration (%v) lacks %q", name, s.Command, want)
			}
		}
		dataIn(name, "/data")
	}
	create := service(t, p, "redis-cluster")
	script := string(tr.read(t, bindSource(t, create, create.Entrypoint[len(create.Entrypoint)-1])))
	if m := regexp.MustCompile(`for n in ([^;]+);`).FindStringSubmatch(script); m == nil || !slices.Equal(sorted(strings.Fields(m[1])), redis) {
		bad("redis-cluster creates the cluster of %v, the nodes are %v", m, redis)
	}
	if !strings.Contains(script, "--cluster-replicas 1") {
		bad("redis-cluster: no replica per master (--cluster-replicas 1)")
	}
	for _, name := range redis {
		if _, ok := create.DependsOn[name]; !ok {
			bad("redis-cluster does not wait for %s", name)
		}
	}
	return append(problems, checkHAPostgres(t, tr, p, dataIn)...)
}

// checkHAPostgres: each PostgreSQL node is Patroni's member of its own
// name, reached by it (connect addresses), with deploy/compose-ha's
// patroni.yml, which names every etcd member and runs in synchronous
// mode; the etcd members form one cluster of them all; the image built
// for them is docker-compose.yml's PostgreSQL release, with the Patroni
// release the boot test (patroni_test.go) runs. TestHAPatroni boots it.
func checkHAPostgres(t *testing.T, tr tree, p *types.Project, dataIn func(name, target string)) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	etcds := nodes(p, "etcd")
	var clients, peers []string
	for _, e := range etcds {
		s := service(t, p, e)
		clients = append(clients, e+":2379")
		peers = append(peers, e+"=https://"+e+":2380")
		if env(s, "ETCD_NAME") != e || env(s, "ETCD_ADVERTISE_CLIENT_URLS") != "https://"+e+":2379" || env(s, "ETCD_INITIAL_ADVERTISE_PEER_URLS") != "https://"+e+":2380" {
			bad("%s: ETCD_NAME, ETCD_ADVERTISE_CLIENT_URLS or ETCD_INITIAL_ADVERTISE_PEER_URLS do not name it over https", e)
		}
		// TLS alone on both ports, a certificate of the CA asked of every
		// client and peer: the files engine-files.sh copies.
		for k, want := range map[string]string{
			"ETCD_LISTEN_CLIENT_URLS": "https://0.0.0.0:2379", "ETCD_LISTEN_PEER_URLS": "https://0.0.0.0:2380",
			"ETCD_CERT_FILE": "/run/kvstack/server.pem", "ETCD_KEY_FILE": "/run/kvstack/server-key.pem",
			"ETCD_TRUSTED_CA_FILE": "/run/kvstack/ca.pem", "ETCD_CLIENT_CERT_AUTH": "true",
			"ETCD_PEER_CERT_FILE": "/run/kvstack/server.pem", "ETCD_PEER_KEY_FILE": "/run/kvstack/server-key.pem",
			"ETCD_PEER_TRUSTED_CA_FILE": "/run/kvstack/ca.pem", "ETCD_PEER_CLIENT_CERT_AUTH": "true",
		} {
			if got := env(s, k); got != want {
				bad("%s: %s = %q, want %q (TLS alone, client and peer certificates asked for)", e, k, got, want)
			}
		}
		dataIn(e, "/var/lib/etcd")
	}
	for _, e := range etcds {
		if got := strings.Split(env(service(t, p, e), "ETCD_INITIAL_CLUSTER"), ","); !slices.Equal(got, peers) {
			bad("%s: ETCD_INITIAL_CLUSTER %v, the members are %v", e, got, peers)
		}
	}
	for _, name := range nodes(p, "postgres") {
		s := service(t, p, name)
		for k, want := range map[string]string{"PATRONI_NAME": name, "PATRONI_POSTGRESQL_CONNECT_ADDRESS": name + ":5432", "PATRONI_RESTAPI_CONNECT_ADDRESS": name + ":8008"} {
			if got := env(s, k); got != want {
				bad("%s: %s = %q, want %q", name, k, got, want)
			}
		}
		if env(s, "PATRONI_REPLICATION_PASSWORD") != haSecrets["POSTGRES_REPLICATION_PASSWORD"] {
			bad("%s does not take POSTGRES_REPLICATION_PASSWORD", name)
		}
		for _, e := range etcds {
			if _, ok := s.DependsOn[e]; !ok {
				bad("%s does not wait for %s", name, e)
			}
		}
		var conf struct {
			Etcd3 struct {
				Hosts    string `yaml:"hosts"`
				Protocol string `yaml:"protocol"`
				CACert   string `yaml:"cacert"`
				Cert     string `yaml:"cert"`
				Key      string `yaml:"key"`
			} `yaml:"etcd3"`
			RestAPI struct {
				CertFile     string `yaml:"certfile"`
				KeyFile      string `yaml:"keyfile"`
				CAFile       string `yaml:"cafile"`
				VerifyClient string `yaml:"verify_client"`
			} `yaml:"restapi"`
			Bootstrap struct {
				DCS struct {
					Synchronous bool `yaml:"synchronous_mode"`
					TTL         int  `yaml:"ttl"`
					LoopWait    int  `yaml:"loop_wait"`
					Retry       int  `yaml:"retry_timeout"`
				} `yaml:"dcs"`
			} `yaml:"bootstrap"`
		}
		if err := yaml.Unmarshal(tr.read(t, bindSource(t, s, repoInContainers+"/deploy/compose-ha/patroni.yml")), &conf); err != nil {
			bad("%s: patroni.yml: %v", name, err)
		}
		if got := strings.Split(conf.Etcd3.Hosts, ","); !slices.Equal(got, clients) {
			bad("%s: Patroni's etcd3 hosts %v, the members are %v", name, got, clients)
		}
		if e := conf.Etcd3; e.Protocol != "https" || e.CACert != "/run/kvstack/ca.pem" || e.Cert != "/run/kvstack/server.pem" || e.Key != "/run/kvstack/server-key.pem" {
			bad("%s: Patroni's etcd3 %+v, want https verified against /run/kvstack/ca.pem, presenting the node's certificate", name, e)
		}
		if r := conf.RestAPI; r.CertFile != "/run/kvstack/server.pem" || r.KeyFile != "/run/kvstack/server-key.pem" || r.CAFile != "/run/kvstack/ca.pem" || r.VerifyClient != "optional" {
			bad("%s: Patroni's restapi TLS %+v, want the node's certificate, the CA, verify_client optional", name, r)
		}
		if d := conf.Bootstrap.DCS; !d.Synchronous || d.TTL < 20 || d.LoopWait+2*d.Retry > d.TTL {
			bad("%s: synchronous_mode %v, ttl %d, loop_wait %d, retry_timeout %d: want synchronous, ttl ≥ 20, loop_wait + 2 × retry_timeout ≤ ttl", name, d.Synchronous, d.TTL, d.LoopWait, d.Retry)
		}
		dataIn(name, "/var/lib/postgresql/data")
	}
	// The image: FROM docker-compose.yml's PostgreSQL release, with the
	// Patroni release installed here (which TestHAPatroni boots).
	single := service(t, mustLoad(t), "postgres")
	for _, name := range append(nodes(p, "postgres"), etcds...) {
		s := service(t, p, name)
		if s.Build == nil || s.Build.Dockerfile != patroniDockerfile || s.Image != patroniImage {
			bad("%s: build %+v image %q, want %s as %s", name, s.Build, s.Image, patroniDockerfile, patroniImage)
		}
	}
	df := string(tr.read(t, patroniDockerfile))
	release, _, _ := strings.Cut(strings.TrimPrefix(single.Image, "postgres:"), "-")
	if !regexp.MustCompile(`(?m)^FROM postgres:` + regexp.QuoteMeta(release) + `-bookworm$`).MatchString(df) {
		bad("%s is not FROM postgres:%s-bookworm, docker-compose.yml's PostgreSQL release", patroniDockerfile, release)
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "patroni").Output(); err != nil || !strings.Contains(df, "patroni="+string(out)+" ") {
		bad("%s does not pin patroni=%s, the release installed here that the boot test runs (%v)", patroniDockerfile, out, err)
	}
	return problems
}

const (
	patroniDockerfile = "deploy/compose-ha/patroni.Dockerfile"
	patroniImage      = "kvstack-patroni:local"
)

// checkHAAppEnv: every kvstack service finds every node by itself: each
// RabbitMQ node in RABBITMQ_URL, each Redis node in REDIS_ADDR, both
// PostgreSQL nodes in DATABASE_URL with target_session_attrs=read-write;
// queues are quorum queues; each replica and consumer has an id of its
// own, and waits for the cluster, the standby and every broker; migrate
// (the schema, then the queues) reaches every broker and waits for them.
func checkHAAppEnv(t *testing.T, tr tree) []string {
	p := tr.project(t)
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var brokers, caches []string
	for _, n := range nodes(p, "rabbitmq") {
		brokers = append(brokers, n+":"+amqpsPort)
	}
	for _, n := range nodes(p, "redis") {
		caches = append(caches, "rediss://"+n+":6379")
	}
	ids := map[string]string{}
	for _, name := range sorted(p.ServiceNames()) {
		s := service(t, p, name)
		if s.Image != kvstackImageName {
			continue
		}
		db, err := url.Parse(env(s, "DATABASE_URL"))
		if err != nil || db.Host != "postgres1:5432,postgres2:5432" || db.Query().Get("target_session_attrs") != "read-write" {
			bad("%s: DATABASE_URL does not name postgres1 and postgres2 with target_session_attrs=read-write", name)
		}
		var hosts []string
		for _, u := range strings.Split(env(s, "RABBITMQ_URL"), ",") {
			if pu, err := url.Parse(u); err == nil {
				hosts = append(hosts, pu.Host)
			}
		}
		if !slices.Equal(hosts, brokers) {
			bad("%s: RABBITMQ_URL reaches %v, the brokers are %v", name, hosts, brokers)
		}
		if env(s, "RABBITMQ_QUEUE_TYPE") != "quorum" {
			bad("%s declares %q queues, want quorum", name, env(s, "RABBITMQ_QUEUE_TYPE"))
		}
		if name == "migrate" { // the schema and the queues: no cache, no id
			for _, dep := range nodes(p, "rabbitmq") {
				if _, ok := s.DependsOn[dep]; !ok {
					bad("migrate does not wait for %s, whose queues it migrates", dep)
				}
			}
			continue
		}
		if got := strings.Split(env(s, "REDIS_ADDR"), ","); !slices.Equal(got, caches) {
			bad("%s: REDIS_ADDR %v, the Redis nodes are %v", name, got, caches)
		}
		id := env(s, "KV_INSTANCE_ID")
		if other, ok := ids[id]; ok || id == "" {
			bad("%s: KV_INSTANCE_ID %q, as %s", name, id, other)
		}
		ids[id] = name
		for _, dep := range append(nodes(p, "rabbitmq"), "redis-cluster", "postgres2", "migrate") {
			if _, ok := s.DependsOn[dep]; !ok {
				bad("%s does not wait for %s", name, dep)
			}
		}
	}
	return problems
}

// scrapeConfig is what checkHAScrapes compares of a job.
type scrapeConfig struct {
	Job     string              `yaml:"job_name"`
	Path    string              `yaml:"metrics_path"`
	Params  map[string][]string `yaml:"params"`
	Statics []struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	} `yaml:"static_configs"`
}

func scrapeConfigs(t *testing.T, tr tree, p *types.Project) []scrapeConfig {
	var conf struct {
		Scrape []scrapeConfig `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(rendered(t, tr, p)["/rendered/prometheus.yml"]), &conf); err != nil {
		t.Fatalf("rendered prometheus.yml: %v", err)
	}
	return conf.Scrape
}

// targets are a job's targets, each with its labels (addr{k=v,…}).
func (c scrapeConfig) targets() []string {
	var out []string
	for _, s := range c.Statics {
		for _, a := range s.Targets {
			var labels []string
			for k, v := range s.Labels {
				labels = append(labels, k+"="+v)
			}
			slices.Sort(labels)
			out = append(out, a+"{"+strings.Join(labels, ",")+"}")
		}
	}
	slices.Sort(out)
	return out
}

// checkHAScrapes: the HA topology's Prometheus has the jobs of
// observability/prometheus.yml (docker-compose.yml's), the same but for
// their targets: one per consumer (its instance_id), per RabbitMQ node,
// per PostgreSQL and Redis node's exporter (labelled node, the node it
// watches); and each exporter runs lab/native's command on its node.
func checkHAScrapes(t *testing.T, tr tree) []string {
	p := tr.project(t)
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	want := map[string][]string{"kv-consumer": nil, "rabbitmq": nil, "rabbitmq-node": nil, "postgres-exporter": nil, "redis-exporter": nil}
	for _, c := range []string{"consumer", "consumer2"} {
		s := service(t, p, c)
		_, port, _ := strings.Cut(env(s, "KV_ADMIN_ADDR"), ":")
		want["kv-consumer"] = append(want["kv-consumer"], c+":"+port+"{instance_id="+env(s, "KV_INSTANCE_ID")+"}")
	}
	for _, n := range nodes(p, "rabbitmq") {
		want["rabbitmq"] = append(want["rabbitmq"], n+":15692{node="+n+"}")
	}
	want["rabbitmq-node"] = want["rabbitmq"]
	for kind, node := range map[native.ExporterKind]string{native.PostgresExporter: "postgres", native.RedisExporter: "redis"} {
		for _, e := range nodes(p, string(kind)) {
			n := node + strings.TrimPrefix(e, string(kind))
			want[string(kind)] = append(want[string(kind)], e+":"+exporterPort[kind]+"{node="+n+"}")
			problems = append(problems, exporterWatches(t, p, kind, e, n)...)
		}
	}
	base := scrapeConfigs(t, tree{files: tr.files}, mustLoad(t))
	ha := scrapeConfigs(t, tr, p)
	if len(base) != len(ha) {
		bad("prometheus.yml has %d jobs, the HA topology's %d", len(base), len(ha))
	}
	for i := range min(len(base), len(ha)) {
		b, h := base[i], ha[i]
		if b.Job != h.Job || b.Path != h.Path || fmt.Sprint(b.Params) != fmt.Sprint(h.Params) {
			bad("job %d: %s %s %v in prometheus.yml, %s %s %v in the HA topology's", i, b.Job, b.Path, b.Params, h.Job, h.Path, h.Params)
			continue
		}
		targets, many := want[h.Job]
		if !many {
			targets = b.targets()
		}
		if slices.Sort(targets); !slices.Equal(h.targets(), targets) {
			bad("job %s scrapes %v, want %v", h.Job, h.targets(), targets)
		}
	}
	return problems
}

var exporterPort = map[native.ExporterKind]string{native.PostgresExporter: "9187", native.RedisExporter: "9121"}

// exporterWatches: the exporter service runs lab/native's command for
// its kind, reading node.
func exporterWatches(t *testing.T, p *types.Project, kind native.ExporterKind, name, node string) []string {
	s := service(t, p, name)
	target := "rediss://" + node + ":6379"
	if kind == native.PostgresExporter {
		target = "postgres://kvstack_monitor:" + roleSecrets["POSTGRES_MONITOR_PASSWORD"] + "@" + node + ":5432/kvstack?sslmode=verify-full&sslrootcert=/etc/kvstack/tls/ca.pem"
	}
	e := native.Exporter{Kind: kind, Name: name, Listen: "0.0.0.0:" + exporterPort[kind], Target: target}
	argv, wantEnv := e.Command(repoInContainers)
	var problems []string
	if !slices.Equal(s.Command, argv[1:]) {
		problems = append(problems, fmt.Sprintf("%s: command %q, want lab/native's %q", name, s.Command, argv[1:]))
	}
	for k, v := range wantEnv {
		if got := env(s, k); got != v {
			problems = append(problems, fmt.Sprintf("%s: %s does not read %s", name, k, node))
		}
	}
	return problems
}

// Each HA check fails on a copy of the repository that has the defect it
// is there to catch.
func TestHAChecksCatch(t *testing.T) {
	tests := []struct{ name, check, file, old, new, want string }{
		{"a RabbitMQ node no peer lists", "engines clustered", "deploy/compose-ha/rabbitmq-cluster.conf",
			"cluster_formation.classic_config.nodes.3 = rabbit@rabbitmq3\n", "", "lists peers"},
		{"an etcd member Patroni does not know", "engines clustered", "deploy/compose-ha/patroni.yml",
			"hosts: etcd1:2379,etcd2:2379,etcd3:2379", "hosts: etcd1:2379,etcd2:2379", "Patroni's etcd3 hosts"},
		{"an etcd member outside the cluster", "engines clustered", haFile,
			"ETCD_INITIAL_CLUSTER: etcd1=https://etcd1:2380,etcd2=https://etcd2:2380,etcd3=https://etcd3:2380", "ETCD_INITIAL_CLUSTER: etcd1=https://etcd1:2380,etcd2=https://etcd2:2380", "ETCD_INITIAL_CLUSTER"},
		{"etcd's peers in plain HTTP", "engines clustered", haFile,
			"  ETCD_LISTEN_PEER_URLS: https://0.0.0.0:2380\n", "  ETCD_LISTEN_PEER_URLS: http://0.0.0.0:2380\n", "ETCD_LISTEN_PEER_URLS"},
		{"etcd without client certificates", "engines clustered", haFile,
			"  ETCD_CLIENT_CERT_AUTH: \"true\"\n", "", "ETCD_CLIENT_CERT_AUTH"},
		{"Patroni's etcd3 in plain HTTP", "engines clustered", "deploy/compose-ha/patroni.yml",
			"  protocol: https\n", "", "Patroni's etcd3"},
		{"Patroni's REST API without TLS", "engines clustered", "deploy/compose-ha/patroni.yml",
			"  certfile: /run/kvstack/server.pem\n", "", "Patroni's restapi TLS"},
		{"a node named as the other", "engines clustered", haFile,
			"PATRONI_NAME: postgres2", "PATRONI_NAME: postgres1", "PATRONI_NAME"},
		{"a leader key that outlives its loop", "engines clustered", "deploy/compose-ha/patroni.yml",
			"    ttl: 20\n", "    ttl: 10\n", "ttl"},
		{"a Patroni release the test does not run", "engines clustered", patroniDockerfile,
			"patroni=3.0.2-1 ", "patroni ", "does not pin patroni"},
		{"a cluster without replicas", "engines clustered", "deploy/compose-ha/redis-cluster-create.sh",
			"--cluster-replicas 1", "--cluster-replicas 0", "no replica per master"},
		{"the API without a broker", "app finds each node", haFile,
			",amqps://kvstack_api:${RABBITMQ_API_PASSWORD:?set RABBITMQ_API_PASSWORD (make compose-secrets)}@rabbitmq3:5671/", "", "RABBITMQ_URL reaches"},
		{"the primary found by name only", "app finds each node", haFile,
			"?target_session_attrs=read-write", "", "target_session_attrs=read-write"},
		{"a Redis node not scraped", "every node scraped", "deploy/compose-ha/prometheus.yml",
			"      - targets: [\"redis-exporter6:9121\"]\n        labels: { node: redis6 }\n", "", "job redis-exporter scrapes"},
		{"a job the HA topology lacks", "every node scraped", "observability/prometheus.yml",
			"scrape_configs:\n", "scrape_configs:\n  - job_name: new\n    static_configs:\n      - targets: [\"${API1_ADMIN_ADDR}\"]\n", "jobs"},
		{"an exporter watching another node", "every node scraped", haFile,
			`"-redis.addr", "rediss://redis6:6379"`, `"-redis.addr", "rediss://redis5:6379"`, "redis-exporter6: command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			catches(t, haChecks[tt.check], haFile, tt.file, tt.old, tt.new, tt.want)
		})
	}
}
