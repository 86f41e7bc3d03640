package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// RabbitMQ is a private RabbitMQ node: its own node name, AMQP, Erlang
// distribution and rabbitmq_prometheus ports (all on 127.0.0.1), its own
// config, env and enabled-plugins files and mnesia/log directories under
// Dir, run as user rabbitmq when we are root (sharing that user's Erlang
// cookie, so rabbitmqctl reaches it). It registers with the machine's
// epmd (4369), starting one if none runs, as every node does.
type RabbitMQ struct {
	Name     string // the program's name (default "rabbitmq")
	Node     string // RABBITMQ_NODENAME, e.g. kvchaos@localhost
	Port     int    // AMQP
	DistPort int    // Erlang distribution
	// MetricsPort is rabbitmq_prometheus's listener.
	MetricsPort int
	Dir         string
	Log         string // its output (default Dir/NAME.log)
	// Peers are the other nodes of a cluster formed at first boot
	// (classic_config peer discovery, blank data dirs): empty for a
	// single node.
	Peers []string
	// TLS, when set, is served on TLSPort (AMQP over TLS, no client
	// certificate asked for), beside the plain-text Port; with TLSOnly, on
	// Port, and nothing is served in plain text.
	TLS     *TLS
	TLSPort int
	TLSOnly bool
}

// distTLS tells whether the node's Erlang distribution (to its peers, and
// rabbitmqctl's to it) is TLS: a node serving TLS alone, of a cluster or
// single (its CLI is a distribution peer too). Each end presents TLS's
// certificate and verifies the other's against TLS.CA and the peer's
// host name (localhost), so the Erlang cookie alone no longer admits a
// peer.
func (r *RabbitMQ) distTLS() bool { return r.TLS != nil && r.TLSOnly }

// distOptFile is the ssl_dist_optfile of a distTLS node.
func (r *RabbitMQ) distOptFile() string { return filepath.Join(r.Dir, "inter_node_tls.config") }

// distOptions is its content.
func (r *RabbitMQ) distOptions() string {
	return "% Written by kvstack (internal/engine.RabbitMQ): the Erlang distribution over TLS.\n" + DistOptions(r.TLS)
}

// DistOptions are the terms of an ssl_dist_optfile for the Erlang
// distribution over TLS with t's files: the same certificate and CA both
// ways, a peer's certificate asked for and verified. The compose files'
// nodes run the same terms (deploy/compose/inter_node_tls.config).
func DistOptions(t *TLS) string {
	side := func(extra string) string {
		return fmt.Sprintf("[{cacertfile, %q}, {certfile, %q}, {keyfile, %q}, {verify, verify_peer}, {secure_renegotiate, true}%s]",
			t.CA, t.Cert, t.Key, extra)
	}
	return "[\n  {server, " + side(", {fail_if_no_peer_cert, true}") + "},\n  {client, " + side("") + "}\n].\n"
}

func (r *RabbitMQ) name() string {
	if r.Name == "" {
		return "rabbitmq"
	}
	return r.Name
}

// URL is the AMQP URL of the node (guest, which RabbitMQ admits from
// loopback only).
func (r *RabbitMQ) URL() string { return "amqp://guest:guest@" + addr(r.Port) + "/" }

// Config is the node's rabbitmq.conf.
func (r *RabbitMQ) Config() string {
	tcp, tlsPort := "listeners.tcp.default = "+addr(r.Port), r.TLSPort
	if r.TLSOnly {
		tcp, tlsPort = "listeners.tcp = none", r.Port
	}
	lines := []string{
		tcp,
		"prometheus.tcp.ip = 127.0.0.1",
		"prometheus.tcp.port = " + strconv.Itoa(r.MetricsPort),
		// Queue figures refresh every second (5 s by default).
		"collect_statistics_interval = 1000",
	}
	if r.TLS != nil {
		lines = append(lines,
			"listeners.ssl.default = "+addr(tlsPort),
			"ssl_options.cacertfile = "+r.TLS.CA,
			"ssl_options.certfile = "+r.TLS.Cert,
			"ssl_options.keyfile = "+r.TLS.Key,
			"ssl_options.verify = verify_none",
			"ssl_options.fail_if_no_peer_cert = false")
	}
	if len(r.Peers) > 0 {
		lines = append(lines, "cluster_formation.peer_discovery_backend = classic_config")
		for i, p := range append([]string{r.Node}, r.Peers...) {
			lines = append(lines, fmt.Sprintf("cluster_formation.classic_config.nodes.%d = %s", i+1, p))
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// Init makes the node's directories and writes its files, again at each
// call: a node made before keeps its data and gets the configuration of
// now (TLSOnly on a node that served plain text, a renewed key).
func (r *RabbitMQ) Init(context.Context) error {
	acct, err := systemUser("rabbitmq")
	if err != nil {
		return err
	}
	if err := acct.mkdirs(r.Dir, filepath.Join(r.Dir, "mnesia"), filepath.Join(r.Dir, "log")); err != nil {
		return err
	}
	if err := r.TLS.own(acct); err != nil {
		return err
	}
	files := map[string]string{
		"rabbitmq.conf":   r.Config(),
		"enabled_plugins": "[rabbitmq_prometheus].\n",
		// Its own, so that the machine's /etc/rabbitmq/rabbitmq-env.conf
		// (the shared node's name) is not read.
		"rabbitmq-env.conf": "",
	}
	if r.distTLS() {
		files[filepath.Base(r.distOptFile())] = r.distOptions()
	}
	for name, text := range files {
		if err := acct.writeFile(filepath.Join(r.Dir, name), text); err != nil {
			return err
		}
	}
	return nil
}

// env is the environment rabbitmq-server and rabbitmqctl need to find this
// node and nothing else.
func (r *RabbitMQ) env() map[string]string {
	acct, _ := systemUser("rabbitmq")
	env := map[string]string{
		"HOME":                          acct.home, // the Erlang cookie
		"RABBITMQ_NODENAME":             r.Node,
		"RABBITMQ_NODE_IP_ADDRESS":      "127.0.0.1",
		"RABBITMQ_NODE_PORT":            strconv.Itoa(r.Port),
		"RABBITMQ_DIST_PORT":            strconv.Itoa(r.DistPort),
		"RABBITMQ_MNESIA_BASE":          filepath.Join(r.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE":             filepath.Join(r.Dir, "log"),
		"RABBITMQ_CONFIG_FILE":          filepath.Join(r.Dir, "rabbitmq.conf"),
		"RABBITMQ_CONF_ENV_FILE":        filepath.Join(r.Dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE": filepath.Join(r.Dir, "enabled_plugins"),
		"ERL_EPMD_ADDRESS":              "127.0.0.1",
		"ERL_FLAGS":                     "-kernel inet_dist_use_interface {127,0,0,1}",
	}
	if args := r.DistErlArgs(); args != nil {
		// The node's VM and rabbitmqctl's both speak it.
		env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = strings.Join(args, " ")
		env["RABBITMQ_CTL_ERL_ARGS"] = env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
	}
	return env
}

// DistErlArgs are the arguments an Erlang VM needs to speak this node's
// distribution (its own, rabbitmqctl's, an operator's erl): TLS with the
// node's certificate when distTLS, nil when the distribution is plain.
// The setup of a connection (TLS and distribution handshakes) gets
// distSetupTime instead of Erlang's 7 s on each side.
func (r *RabbitMQ) DistErlArgs() []string {
	if !r.distTLS() {
		return nil
	}
	return []string{"-proto_dist", "inet_tls", "-ssl_dist_optfile", r.distOptFile(),
		"-kernel", "net_setuptime", strconv.Itoa(int(distSetupTime / time.Second))}
}

// distSetupTime bounds the setup of a distribution connection over TLS
// (net_setuptime, 7 s by default). At load 17-26 on 2 cores, rabbitmqctl
// reaching a single node over TLS failed ("TCP connection succeeded but
// Erlang distribution failed") in 3 of 8 runs of TestLockedEngines, and an
// erl probe got pang, at any call, not only the first after the start.
// A node that is down is refused at once all the same (epmd does not
// know it); only a node frozen with its port open keeps a caller waiting
// this long.
const distSetupTime = 20 * time.Second

// Program runs the node in the foreground. RABBITMQ_ALLOW_INPUT makes
// rabbitmq-server exec the Erlang VM instead of staying as a shell around
// it, so that the pid supervisord reports is the node's (a kill -9 of it
// is a node crash, a SIGTERM its orderly stop); -noinput keeps the VM from
// reading a shell off its stdin.
func (r *RabbitMQ) Program() supervisor.Program {
	acct, _ := systemUser("rabbitmq")
	env := r.env()
	env["RABBITMQ_ALLOW_INPUT"] = "1"
	env["RABBITMQ_SERVER_START_ARGS"] = "-noinput"
	probe := supervisor.TCPProbe{Addrs: []string{addr(r.Port), addr(r.MetricsPort)}}
	if r.TLS != nil && !r.TLSOnly {
		probe.Addrs = append(probe.Addrs, addr(r.TLSPort))
	}
	return supervisor.Program{
		Name:    r.name(),
		Command: []string{"/usr/lib/rabbitmq/bin/rabbitmq-server"},
		Env:     env, Dir: r.Dir, User: acct.name, Priority: 1, StopWait: 60 * time.Second,
		Health: probe,
		Addr:   addr(r.Port), Log: logFile(r.Log, r.Dir, r.name()),
	}
}

// Queues is every queue of the node with its messages (ready + unacked)
// and unacknowledged messages, as rabbitmqctl counts them (exact, unlike
// the metrics, which refresh every collect_statistics_interval).
func (r *RabbitMQ) Queues(ctx context.Context) (map[string]QueueDepth, error) {
	out, err := r.ctl(ctx, "list_queues", "name", "messages", "messages_unacknowledged")
	if err != nil {
		return nil, err
	}
	return parseQueues(out), nil
}

// QueueDepth is one queue's message counts.
type QueueDepth struct{ Messages, Unacked int }

func parseQueues(out []byte) map[string]QueueDepth {
	m := map[string]QueueDepth{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		n, err1 := strconv.Atoi(f[1])
		u, err2 := strconv.Atoi(f[2])
		if err1 == nil && err2 == nil {
			m[f[0]] = QueueDepth{Messages: n, Unacked: u}
		}
	}
	return m
}

// User is a RabbitMQ user with its permissions on the vhost / (regular
// expressions over resource names, as rabbitmqctl set_permissions takes
// them): kvstack's least-privilege users (docs/SECURITY.md).
type User struct {
	Name, Password         string
	Configure, Write, Read string
}

// ImportDefinitions imports a definitions file (users, vhosts,
// permissions…) as the node would at its start (load_definitions):
// rabbitmqctl import_definitions, which reads file itself.
func (r *RabbitMQ) ImportDefinitions(ctx context.Context, file string) error {
	_, err := r.ctlAfterStart(ctx, "import_definitions", file)
	return err
}

// startCLIWait bounds how long a call made right after the node's start
// (AddUsers, ImportDefinitions: provisioning) waits for rabbitmqctl to
// reach the node. The AMQP port opening does not tell that the CLI gets
// in: a single node serving TLS alone, its distribution TLS, once
// answered its first rabbitmqctl eval with exit 69 (node unavailable) at
// load 10, its connection's setup over TLS slow under load (see
// distSetupTime). A cluster's first CLI call is Form's, retried until the
// cluster is whole.
const startCLIWait = 30 * time.Second

// ctlAfterStart is ctl for the calls made right after the node's start,
// each idempotent: while rabbitmqctl exits 69 (the node unavailable), it
// tries again, starting no try after startCLIWait (a try itself may take
// ctl's own 30 s, so the whole can take about twice that). Other calls (Queues,
// RunningNodes) are not retried: they are also made on nodes stopped on
// purpose, which a wait would only slow.
func (r *RabbitMQ) ctlAfterStart(ctx context.Context, args ...string) ([]byte, error) {
	deadline := time.Now().Add(startCLIWait)
	for {
		out, err := r.ctl(ctx, args...)
		var exit *exec.ExitError
		if err == nil || !errors.As(err, &exit) || exit.ExitCode() != exUnavailable || time.Now().After(deadline) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

// exUnavailable is rabbitmqctl's exit status when it cannot reach the
// node (sysexits' EX_UNAVAILABLE).
const exUnavailable = 69

// AddUsers makes each user, or sets its password and permissions when it
// exists, and deletes the users named in remove (guest, once the stack has
// a user of its own to declare the queues), in one rabbitmqctl call: each
// call costs seconds. In a cluster, one node's users are every node's.
func (r *RabbitMQ) AddUsers(ctx context.Context, remove []string, users ...User) error {
	bin := func(s string) string { return "<<" + strconv.Quote(s) + ">>" }
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "case catch rabbit_auth_backend_internal:add_user(%s, %s, <<\"kvstack\">>) of ok -> ok; "+
			"{error, {user_already_exists, _}} -> ok = rabbit_auth_backend_internal:change_password(%s, %s, <<\"kvstack\">>) end, ",
			bin(u.Name), bin(u.Password), bin(u.Name), bin(u.Password))
		fmt.Fprintf(&b, "ok = rabbit_auth_backend_internal:set_permissions(%s, <<\"/\">>, %s, %s, %s, <<\"kvstack\">>), ",
			bin(u.Name), bin(u.Configure), bin(u.Write), bin(u.Read))
	}
	for _, name := range remove {
		fmt.Fprintf(&b, "case catch rabbit_auth_backend_internal:delete_user(%s, <<\"kvstack\">>) of ok -> ok; {error, {no_such_user, _}} -> ok end, ", bin(name))
	}
	b.WriteString("ok.")
	_, err := r.ctlAfterStart(ctx, "eval", b.String())
	return err
}
