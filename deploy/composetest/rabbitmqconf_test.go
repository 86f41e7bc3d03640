package composetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/internal/tlsconf"
)

// compose's RabbitMQ configuration, booted: a private node (engine.RabbitMQ,
// Debian's rabbitmq-server) runs with the file the compose file mounts in
// /etc/rabbitmq/conf.d, the TLS files and the definitions file `make
// compose-secrets` makes, as engine-files.sh copies them; only where it
// listens is rewritten. Then the services' users are tried over AMQPS,
// and plain AMQP and the image's default user over the node's loopback.

// composeRabbitMQ is an engine.RabbitMQ whose rabbitmq.conf is compose's.
type composeRabbitMQ struct {
	*engine.RabbitMQ
	conf  string
	files map[string][]byte // what engine-files.sh copies to /run/kvstack
}

func (r *composeRabbitMQ) Init(ctx context.Context) error {
	if err := r.RabbitMQ.Init(ctx); err != nil {
		return err
	}
	run := filepath.Join(r.Dir, "run")
	if err := mkdirOwned(run, "rabbitmq"); err != nil {
		return err
	}
	for name, b := range r.files {
		path := filepath.Join(run, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return err
		}
		if err := chownTo(path, "rabbitmq"); err != nil {
			return err
		}
	}
	path := filepath.Join(r.Dir, "rabbitmq.conf")
	if err := os.WriteFile(path, []byte(r.conf), 0o644); err != nil {
		return err
	}
	return chownTo(path, "rabbitmq")
}

func (r *composeRabbitMQ) Program() supervisor.Program { return r.RabbitMQ.Program() }

// checkRabbitMQConfBoots boots a node of service svc's configuration
// (its conf.d files) and tries who may connect how.
func checkRabbitMQConfBoots(t *testing.T, tr tree, svc string) []string {
	p := tr.project(t)
	s := service(t, p, svc)
	g := makeGenerated(t, tr.composeFile())
	ports, err := engine.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	tlsPort, plainPort, distPort, metricsPort := ports[0], ports[1], ports[2], ports[3]
	dir, err := os.MkdirTemp("", "composetest-rabbitmq-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // when engine.Start never ran
	run := filepath.Join(dir, "rabbitmq", "run")
	var conf strings.Builder
	files := map[string][]byte{}
	for _, v := range s.Volumes {
		rel, _ := filepath.Rel(root, v.Source)
		switch {
		case strings.HasPrefix(v.Target, "/etc/rabbitmq/conf.d/"):
			conf.Write(tr.read(t, rel))
			conf.WriteString("\n")
		case strings.HasPrefix(v.Target, "/kvstack/engine-in/"):
			b, err := os.ReadFile(g.hostPath(t, v.Source))
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(v.Target, "/kvstack/engine-in/")] = b
		}
	}
	text := strings.ReplaceAll(conf.String(), "/run/kvstack/", run+"/")
	var problems []string
	// Only where it listens is the test's: AMQPS on a private port of
	// loopback. A plain listener the file leaves gets a port too, to be
	// found answering.
	ssl := regexp.MustCompile(`(?m)^listeners\.ssl\.default\s*=\s*(\S+)$`)
	if m := ssl.FindStringSubmatch(text); m == nil || m[1] != amqpsPort {
		problems = append(problems, fmt.Sprintf("%s: no listeners.ssl.default = %s, the port the services dial", svc, amqpsPort))
	}
	text = ssl.ReplaceAllString(text, "listeners.ssl.default = 127.0.0.1:"+strconv.Itoa(tlsPort))
	if !regexp.MustCompile(`(?m)^listeners\.tcp\s*=\s*none$`).MatchString(text) {
		text += "listeners.tcp.default = 127.0.0.1:" + strconv.Itoa(plainPort) + "\n"
	}
	text += "prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = " + strconv.Itoa(metricsPort) + "\n"
	node := &composeRabbitMQ{RabbitMQ: &engine.RabbitMQ{Name: "rabbitmq", Node: "kvcompose" + strconv.Itoa(tlsPort) + "@localhost",
		Port: tlsPort, DistPort: distPort, MetricsPort: metricsPort, Dir: filepath.Join(dir, "rabbitmq"), Log: filepath.Join(t.TempDir(), "rabbitmq.log")},
		conf: text, files: files}
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(3*time.Minute))
	defer cancel()
	private, err := engine.Start(ctx, dir, &strings.Builder{}, node)
	if private != nil {
		t.Cleanup(func() { _ = private.Close(context.Background()) })
	}
	if err != nil {
		log, _ := os.ReadFile(node.Log)
		lines := strings.Split(string(log), "\n")
		return append(problems, fmt.Sprintf("RabbitMQ does not boot with %s's configuration: %v\n%s", svc, err, strings.Join(lines[max(0, len(lines)-40):], "\n")))
	}

	caFile := filepath.Join(run, "ca.pem")
	dial := func(raw string) (*amqp.Connection, error) {
		u, err := amqpURL(raw, "127.0.0.1:"+strconv.Itoa(tlsPort))
		if err != nil {
			return nil, err
		}
		cfg, err := tlsconf.Client(caFile, "")
		if err != nil {
			t.Fatal(err)
		}
		host, _, _ := strings.Cut(hostOf(raw), ":")
		cfg.ServerName = host // the name the service dials
		return amqp.DialTLS(u, cfg)
	}
	for _, name := range []string{"migrate", "api1", "consumer"} {
		for _, raw := range strings.Split(env(service(t, p, name), "RABBITMQ_URL"), ",") {
			c, err := dial(raw)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s cannot connect to RabbitMQ over TLS with its URL: %v", name, err))
				continue
			}
			c.Close()
		}
	}
	if c, err := amqp.Dial("amqp://guest:guest@127.0.0.1:" + strconv.Itoa(plainPort) + "/"); err == nil {
		c.Close()
		problems = append(problems, "RabbitMQ answers plain AMQP, as guest")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		problems = append(problems, fmt.Sprintf("RabbitMQ answers plain AMQP: %v", err))
	}
	cfg, _ := tlsconf.Client(caFile, "")
	cfg.ServerName = "rabbitmq"
	if c, err := amqp.DialTLS("amqps://guest:guest@127.0.0.1:"+strconv.Itoa(tlsPort)+"/", cfg); err == nil {
		c.Close()
		problems = append(problems, "RabbitMQ lets the image's default user guest in")
	}
	return problems
}

// amqpURL is raw with its host replaced by addr.
func amqpURL(raw, addr string) (string, error) {
	h := hostOf(raw)
	if h == "" {
		return "", fmt.Errorf("no host in %s", raw)
	}
	return strings.Replace(raw, "@"+h+"/", "@"+addr+"/", 1), nil
}

// hostOf is the host:port of an AMQP URL.
func hostOf(raw string) string {
	_, rest, ok := strings.Cut(raw, "@")
	if !ok {
		return ""
	}
	h, _, _ := strings.Cut(rest, "/")
	return h
}

var rabbitMQConfChecks = map[string]check{
	"rabbitmq.conf boots": func(t *testing.T, tr tree) []string { return checkRabbitMQConfBoots(t, tr, "rabbitmq") },
}

// docker-compose.yml's RabbitMQ configuration boots a real node: AMQPS
// alone, the services' users of the definitions file, no guest.
func TestRabbitMQConfBoots(t *testing.T) {
	t.Parallel()
	for _, p := range rabbitMQConfChecks["rabbitmq.conf boots"](t, tree{}) {
		t.Error(p)
	}
}

func TestRabbitMQConfBootsCatches(t *testing.T) {
	if testing.Short() {
		t.Skip("boots RabbitMQ once per case")
	}
	t.Parallel()
	tests := []struct{ name, file, old, new, want string }{
		{"plain AMQP left on", "deploy/compose/rabbitmq.conf", "listeners.tcp = none\n", "", "plain AMQP"},
		{"no definitions", "deploy/compose/rabbitmq.conf", "definitions.import_backend = local_filesystem\ndefinitions.local.path = /run/kvstack/rabbitmq-definitions.json\n", "", "cannot connect to RabbitMQ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			catches(t, rabbitMQConfChecks["rabbitmq.conf boots"], "docker-compose.yml", tt.file, tt.old, tt.new, tt.want)
		})
	}
}
