package bench

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/kvstack/kvstack/deploy/native"
	"github.com/kvstack/kvstack/internal/config"
)

// stackView is the harness's knowledge of the running native stack: its
// settings (stack.env, the environment), each program's environment as the
// stack's supervisord gives it, and where to find each process's pid.
type stackView struct {
	s     *native.Settings
	progs map[string]native.Program
}

func loadStack(root string) (*stackView, error) {
	s, err := native.Load(root, os.Environ())
	if err != nil {
		return nil, err
	}
	v := &stackView{s: s, progs: map[string]native.Program{}}
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
// api2, consumer (when running), jaeger, and the engines.
// Private engines (KV_ENGINES=private) are the stack supervisord's
// programs; shared ones are found by the port they listen on, and their
// CPU then includes that of anyone else using them.
func (v *stackView) procs(ctx context.Context) ([]Proc, error) {
	sup := native.NewStack(v.s, nil).Supervisor()
	var out []Proc
	for _, role := range []string{"nginx", "mtail", "api1", "api2", "consumer", "jaeger"} {
		if _, ok := v.progs[role]; !ok {
			continue // a stack without mtail
		}
		pid, err := sup.Pid(ctx, role)
		if err != nil {
			return nil, fmt.Errorf("pid of %s: %w", role, err)
		}
		if pid == 0 {
			if role == "consumer" {
				continue // stopped by a scenario
			}
			return nil, fmt.Errorf("the stack's %s does not run", role)
		}
		out = append(out, Proc{role, pid})
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

// engines describes where the engines' pids come from, for the report.
func (v *stackView) engines() string {
	if v.s.PrivateEngines() {
		return "private (KV_ENGINES=private): PostgreSQL, Redis and RabbitMQ are the stack's own, run by its supervisord; their CPU is this benchmark's alone"
	}
	return "shared (KV_ENGINES=shared): the machine's PostgreSQL, Redis and RabbitMQ, found by their ports; their CPU includes that of anyone else using them during a run (prefer KV_ENGINES=private)"
}

// renderEdge writes an nginx configuration rendered by the stack from its
// own template, with listen and upstreams instead of the stack's edge and
// replicas, its logs in dir: the same server block, keepalive, limits and
// access log as the edge. It returns the file's path.
func (v *stackView) renderEdge(dir, listen string, upstreams [2]string) (string, error) {
	status, err := freeLoopbackAddr() // its own stub_status, beside the stack's
	if err != nil {
		return "", err
	}
	env := append(os.Environ(),
		"KV_STACK_DIR="+dir, "NGINX_LISTEN="+listen, "NGINX_STATUS_LISTEN="+status, "API1_ADDR="+upstreams[0], "API2_ADDR="+upstreams[1],
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
			path := filepath.Join(dir, "nginx.conf")
			return path, os.WriteFile(path, []byte(c.Text), 0o644)
		}
	}
	return "", fmt.Errorf("the stack renders no nginx configuration")
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
