package composetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
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
	conf    string
	files   map[string][]byte // what engine-files.sh copies to /run/kvstack
	erlArgs string            // RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS, its files the test's
	inetrc  string            // ERL_INETRC: the service's host name is loopback
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

// Program is the node's, with the service's Erlang VM arguments (the
// distribution's TLS), as the image's rabbitmq-server reads them.
func (r *composeRabbitMQ) Program() supervisor.Program {
	p := r.RabbitMQ.Program()
	if r.erlArgs != "" {
		p.Env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = r.erlArgs
	}
	if r.inetrc != "" {
		p.Env["ERL_INETRC"] = r.inetrc
	}
	return p
}

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
	var problems []string
	optfiles := map[string]string{} // target → the file's repository path
	for _, v := range s.Volumes {
		rel, _ := filepath.Rel(root, v.Source)
		switch {
		case v.Target == "/etc/rabbitmq/conf.d/20-kvstack-cluster.conf":
			// The peers (rabbit@rabbitmq1…3) are names of the project's
			// network; "engines clustered" (ha_test.go) checks the list.
		case strings.HasSuffix(v.Target, ".config") && strings.HasPrefix(v.Target, "/etc/rabbitmq/"):
			optfiles[v.Target] = filepath.ToSlash(rel)
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
	erlArgs, distProblems := composeDistArgs(t, tr, s, optfiles, run, filepath.Join(dir, "inter_node_tls.config"))
	problems = append(problems, distProblems...)
	// Only where it listens is the test's: AMQPS on a private port of
	// loopback. A plain listener the file leaves gets a port too, to be
	// found answering.
	ssl := regexp.MustCompile(`(?m)^listeners\.ssl\.default\s*=\s*(\S+)$`)
	if m := ssl.FindStringSubmatch(text); m == nil || m[1] != amqpsPort {
		problems = append(problems, fmt.Sprintf("%s: no listeners.ssl.default = %s, the port the services dial", svc, amqpsPort))
	}
	// A defect the files show already fails the check: a node booted on a
	// configuration known to be broken would decide nothing more (two of
	// TestRabbitMQConfBootsCatches' four cases are found so).
	if len(problems) > 0 {
		return problems
	}
	text = ssl.ReplaceAllString(text, "listeners.ssl.default = 127.0.0.1:"+strconv.Itoa(tlsPort))
	if !regexp.MustCompile(`(?m)^listeners\.tcp\s*=\s*none$`).MatchString(text) {
		text += "listeners.tcp.default = 127.0.0.1:" + strconv.Itoa(plainPort) + "\n"
	}
	text += "prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = " + strconv.Itoa(metricsPort) + "\n"
	// The node is named on its service's host name, as in compose
	// (rabbit@rabbitmq1): a TLS peer checks the node's certificate
	// against it. Erlang resolves it to loopback (an inetrc file), the
	// machine's resolver is left alone.
	inetrc := filepath.Join(dir, "inetrc")
	if err := os.WriteFile(inetrc, []byte(fmt.Sprintf("{host, {127,0,0,1}, [%q]}.\n{lookup, [file, native]}.\n", s.Hostname)), 0o644); err != nil {
		t.Fatal(err)
	}
	node := &composeRabbitMQ{RabbitMQ: &engine.RabbitMQ{Name: "rabbitmq", Node: "kvcompose" + strconv.Itoa(tlsPort) + "@" + s.Hostname,
		Port: tlsPort, DistPort: distPort, MetricsPort: metricsPort, Dir: filepath.Join(dir, "rabbitmq"), Log: filepath.Join(t.TempDir(), "rabbitmq.log")},
		conf: text, files: files, erlArgs: erlArgs, inetrc: inetrc}
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
	if erlArgs != "" {
		problems = append(problems, checkComposeDist(ctx, node.Node, inetrc, strings.Fields(erlArgs))...)
	}
	return problems
}

// distArgs are the Erlang VM arguments of a compose RabbitMQ node and of
// its CLI: the distribution over TLS with the mounted options file.
const distArgs = "-proto_dist inet_tls -ssl_dist_optfile "

// composeDistArgs checks that service s runs its Erlang distribution, the
// node's and the CLI's, over TLS with an options file it mounts whose
// terms are internal/engine.DistOptions' for the files engine-files.sh
// copies; it writes that file to optfile with run for /run/kvstack and
// returns the node's arguments with it.
func composeDistArgs(t *testing.T, tr tree, s types.ServiceConfig, optfiles map[string]string, run, optfile string) (string, []string) {
	server, ctl := env(s, "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"), env(s, "RABBITMQ_CTL_ERL_ARGS")
	target, ok := strings.CutPrefix(server, distArgs)
	if !ok || ctl != server {
		return "", []string{fmt.Sprintf("%s: the Erlang distribution is plain: RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS %q and RABBITMQ_CTL_ERL_ARGS %q, want both %q and the file",
			s.Name, server, ctl, distArgs)}
	}
	rel, ok := optfiles[target]
	if !ok {
		return "", []string{fmt.Sprintf("%s: the distribution's options file %s is not mounted", s.Name, target)}
	}
	var terms strings.Builder
	for _, line := range strings.SplitAfter(string(tr.read(t, rel)), "\n") {
		if !strings.HasPrefix(line, "%") {
			terms.WriteString(line)
		}
	}
	want := engine.DistOptions(&engine.TLS{CA: "/run/kvstack/ca.pem", Cert: "/run/kvstack/server.pem", Key: "/run/kvstack/server-key.pem"})
	if terms.String() != want {
		return "", []string{fmt.Sprintf("%s: %s's terms are not internal/engine.DistOptions' (make up-ha's nodes'):\n%s\nwant\n%s", s.Name, rel, terms.String(), want)}
	}
	if err := os.WriteFile(optfile, []byte(strings.ReplaceAll(terms.String(), "/run/kvstack/", run+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	return distArgs + optfile, nil
}

// checkComposeDist: the node answers an Erlang node with the cookie that
// speaks the distribution's TLS with the CLI's arguments (pong), and
// refuses one in plain TCP holding the same cookie (pang).
func checkComposeDist(ctx context.Context, node, inetrc string, ctlArgs []string) []string {
	acct, err := user.Lookup("rabbitmq")
	if err != nil {
		return []string{err.Error()}
	}
	ping := func(args []string) string {
		name, _, _ := strings.Cut(node, "@")
		cmd := exec.CommandContext(ctx, "erl", append(append([]string{"-sname", "probe" + name + "@localhost", "-noinput"}, args...),
			"-eval", "io:format(\"~p~n\", [net_adm:ping('"+node+"')]), halt().")...)
		cmd.Env = append(os.Environ(), "HOME="+acct.HomeDir, "ERL_EPMD_ADDRESS=127.0.0.1", "ERL_INETRC="+inetrc)
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	var problems []string
	if got := ping(ctlArgs); !strings.HasSuffix(got, "pong") {
		problems = append(problems, fmt.Sprintf("the CLI's Erlang distribution (RABBITMQ_CTL_ERL_ARGS) does not reach the node over TLS: %s, want pong", got))
	}
	if got := ping(nil); !strings.HasSuffix(got, "pang") {
		problems = append(problems, fmt.Sprintf("a plain-TCP Erlang node holding the cookie reaches the node: %s, want pang (the distribution TLS alone)", got))
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
	"HA node boots": func(t *testing.T, tr tree) []string {
		tr.compose = haFile
		return checkRabbitMQConfBoots(t, tr, "rabbitmq1")
	},
}

// docker-compose.yml's RabbitMQ configuration boots a real node: AMQPS
// alone, the services' users of the definitions file, no guest, the
// Erlang distribution TLS alone; and so does docker-compose.ha.yml's.
func TestRabbitMQConfBoots(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"rabbitmq.conf boots", "HA node boots"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, p := range rabbitMQConfChecks[name](t, tree{}) {
				t.Error(p)
			}
		})
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
	// docker-compose.ha.yml's nodes: the distribution plain, or its
	// options file letting in a peer without a certificate.
	for _, tt := range []struct{ name, file, old, new, want string }{
		{"an HA node's distribution plain", haFile,
			"  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: -proto_dist inet_tls -ssl_dist_optfile /etc/rabbitmq/inter_node_tls.config\n", "", "distribution is plain"},
		{"no peer certificate asked", "deploy/compose/inter_node_tls.config", ", {fail_if_no_peer_cert, true}", "", "DistOptions"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			catches(t, rabbitMQConfChecks["HA node boots"], haFile, tt.file, tt.old, tt.new, tt.want)
		})
	}
}
