package bench

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/native"
)

// stackView is the harness's knowledge of the running native stack: its
// settings (stack.env, the environment), each program's environment as the
// stack's supervisord gives it, and where to find each process's pid.
type stackView struct {
	s     *native.Settings
	progs map[string]supervisor.Program
}

func loadStack(root string) (*stackView, error) {
	s, err := native.Load(root, os.Environ())
	if err != nil {
		return nil, err
	}
	v := &stackView{s: s, progs: map[string]supervisor.Program{}}
	for _, p := range native.Processes(s) {
		v.progs[p.Name] = p
	}
	return v, nil
}

// env is a program's environment as the stack starts it, with extra on top
// (NAME=VALUE), in os/exec's form.
func (v *stackView) env(program string, extra ...string) []string {
	env := maps.Clone(v.progs[program].Env)
	for _, kv := range extra {
		name, value, _ := cut(kv)
		env[name] = value
	}
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func cut(kv string) (string, string, bool) {
	for i := range len(kv) {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

// configs reads the API's and the consumer's configuration as the stack's
// api1 and consumer read theirs.
func (v *stackView) configs() (config.API, config.Consumer, error) {
	api, err := config.LoadFrom[config.API](v.progs["api1"].Env)
	if err != nil {
		return api, config.Consumer{}, fmt.Errorf("api1's configuration: %w", err)
	}
	cons, err := config.LoadFrom[config.Consumer](v.progs["consumer"].Env)
	if err != nil {
		return api, cons, fmt.Errorf("the consumer's configuration: %w", err)
	}
	return api, cons, nil
}

// engineRoles are the engines' roles in the CPU tables, each with the
// stack.env port it listens on.
var engineRoles = []struct{ role, port string }{
	{"postgres", "PGPORT"}, {"redis", "REDIS_PORT"}, {"rabbitmq", "RABBITMQ_PORT"},
}

// procs returns the pid of each running process of the stack, by role:
// nginx, mtail (which reads nginx's access log, a line per request), api1,
// api2, consumer (when running; the HA topology's consumer2 counts as one
// too), jaeger, and the engines.
// Private engines (KV_ENGINES=private) and the HA topology's nodes are the
// stack supervisord's programs (each node of a cluster in its engine's
// role); shared ones are found by the port they listen on, and their CPU
// then includes that of anyone else using them.
func (v *stackView) procs(ctx context.Context) ([]Proc, error) {
	sup := native.NewStack(v.s, nil).Supervisor()
	var out []Proc
	for _, name := range []string{"nginx", "mtail", "api1", "api2", "consumer", "consumer2", "jaeger"} {
		if _, ok := v.progs[name]; !ok {
			continue // a stack without mtail, or with one consumer
		}
		pid, err := sup.Pid(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("pid of %s: %w", name, err)
		}
		role := name
		if name == "consumer2" {
			role = "consumer"
		}
		if pid == 0 {
			if role == "consumer" {
				continue // stopped by a scenario
			}
			return nil, fmt.Errorf("the stack's %s does not run", name)
		}
		out = append(out, Proc{role, pid})
	}
	engines, err := v.engineProcs(ctx, sup)
	return append(out, engines...), err
}

// engineProcs are the engines' processes: one per role, or every node of
// each cluster in the HA topology.
func (v *stackView) engineProcs(ctx context.Context, sup *supervisor.Supervisor) ([]Proc, error) {
	var out []Proc
	if v.ha() {
		nodes := v.s.HANodes()
		for role, group := range map[string][]native.Node{"rabbitmq": nodes.RabbitMQ, "redis": nodes.Redis, "postgres": nodes.Postgres} {
			for _, n := range group {
				pid, err := sup.Pid(ctx, n.Name)
				if err != nil || pid == 0 {
					return nil, fmt.Errorf("pid of %s: %v (does the HA topology run? make up-ha)", n.Name, err)
				}
				out = append(out, Proc{role, pid})
			}
		}
		return out, nil
	}
	for _, e := range engineRoles {
		var (
			pid int
			err error
		)
		if v.s.PrivateEngines() {
			pid, err = sup.Pid(ctx, e.role)
		} else {
			pid, err = pidOn(v.s.Get(e.port))
		}
		if err != nil || pid == 0 {
			return nil, fmt.Errorf("pid of %s: %v", e.role, err)
		}
		out = append(out, Proc{e.role, pid})
	}
	return out, nil
}

// ha tells whether the stack is the HA topology (KV_TOPOLOGY=ha).
func (v *stackView) ha() bool { return v.s.Get("KV_TOPOLOGY") == "ha" }

// engines describes where the engines' pids come from, for the report.
func (v *stackView) engines() string {
	if v.ha() {
		return "the HA topology's (make up-ha): 3 RabbitMQ nodes, 6 Redis Cluster nodes, a PostgreSQL primary and its synchronous standby, run by the stack's supervisord; each engine's figure is the sum of its nodes' CPU, and theirs alone"
	}
	if v.s.PrivateEngines() {
		return "private (KV_ENGINES=private): PostgreSQL, Redis and RabbitMQ are the stack's own, run by its supervisord; their CPU is this benchmark's alone"
	}
	return "shared (KV_ENGINES=shared): the machine's PostgreSQL, Redis and RabbitMQ, found by their ports; their CPU includes that of anyone else using them during a run (prefer KV_ENGINES=private)"
}

// consumers are the stack's consumer programs: consumer, and the HA
// topology's consumer2.
func (v *stackView) consumers() []string {
	out := []string{"consumer"}
	if _, ok := v.progs["consumer2"]; ok {
		out = append(out, "consumer2")
	}
	return out
}

// renderEdge writes an nginx configuration rendered by the stack from its
// own template, with listen and upstreams (two or more) instead of the
// stack's edge and replicas, its logs in dir: the same server block,
// TLS (the stack's certificate, valid for any loopback port), keepalive,
// limits and access log as the edge. It returns the file's path.
func (v *stackView) renderEdge(dir, listen string, upstreams []string, plain bool) (string, error) {
	status, err := freeLoopbackAddr() // its own stub_status, beside the stack's
	if err != nil {
		return "", err
	}
	env := append(os.Environ(),
		"KV_STACK_DIR="+dir, "NGINX_LISTEN="+listen, "NGINX_STATUS_LISTEN="+status, "API1_ADDR="+upstreams[0], "API2_ADDR="+upstreams[1],
		"NGINX_TLS_CERT="+v.s.Get("NGINX_TLS_CERT"), "NGINX_TLS_KEY="+v.s.Get("NGINX_TLS_KEY"),
		"NGINX_ACCESS_LOG="+filepath.Join(dir, "nginx-access.log"), "NGINX_ERROR_LOG="+filepath.Join(dir, "nginx-error.log"))
	s, err := native.Load(v.s.Root, env)
	if err != nil {
		return "", err
	}
	configs, _, err := native.Render(s)
	if err != nil {
		return "", err
	}
	for _, c := range configs {
		if c.Program == "nginx" {
			text, err := addUpstreams(c.Text, upstreams[1], upstreams[2:])
			if err == nil && plain {
				text, err = withoutTLS(text, listen)
			}
			if err != nil {
				return "", err
			}
			path := filepath.Join(dir, "nginx.conf")
			return path, os.WriteFile(path, []byte(text), 0o644)
		}
	}
	return "", fmt.Errorf("the stack renders no nginx configuration")
}

// withoutTLS is the edge's configuration conf serving plain HTTP on
// listen: its listen line without ssl and http2 (nginx 1.22 speaks HTTP/2
// in clear text only to clients that ask for it with prior knowledge, and
// the load's clients speak HTTP/1.1 either way), and without the ssl_
// directives and the plain-request-on-the-TLS-port error page. Everything
// else, HSTS included, is left as it is.
func withoutTLS(conf, listen string) (string, error) {
	tlsListen := "listen " + listen + " ssl http2;"
	if !strings.Contains(conf, tlsListen) {
		return "", fmt.Errorf("nginx configuration: no %q to serve plain HTTP on", tlsListen)
	}
	var out []string
	for _, l := range strings.SplitAfter(conf, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "ssl_") || strings.HasPrefix(t, "error_page 497 ") {
			continue
		}
		out = append(out, strings.Replace(l, tlsListen, "listen "+listen+";", 1))
	}
	return strings.Join(out, ""), nil
}

// addUpstreams adds a server line for each of extra after the template's
// line for last (its second replica), with the same parameters: an edge
// in front of more replicas than the stack's two.
func addUpstreams(conf, last string, extra []string) (string, error) {
	if len(extra) == 0 {
		return conf, nil
	}
	lines := strings.SplitAfter(conf, "\n")
	for i, l := range lines {
		if !strings.Contains(l, "server "+last+" ") {
			continue
		}
		var add []string
		for _, addr := range extra {
			add = append(add, strings.Replace(l, last, addr, 1))
		}
		return strings.Join(slices.Concat(lines[:i+1], add, lines[i+1:]), ""), nil
	}
	return "", fmt.Errorf("nginx configuration: no upstream server %s to add replicas after", last)
}

// stop stops one process of the stack through its supervisord.
func (v *stackView) stop(ctx context.Context, name string) error {
	return native.NewStack(v.s, nil).Supervisor().Stop(ctx, name)
}

// start starts one process of the stack and waits until it is healthy.
func (v *stackView) start(ctx context.Context, name string) error {
	st := native.NewStack(v.s, os.Stderr)
	if err := st.Supervisor().Start(ctx, name, false); err != nil {
		return err
	}
	return st.WaitHealthy(ctx, name)
}

// freeLoopbackAddr is a port on 127.0.0.1 that nothing listens on now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
