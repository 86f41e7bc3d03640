package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// child is a process the harness started and must stop.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
}

// startChild runs argv with env (os/exec's form; nil: the harness's own)
// and its output in log.
func startChild(name, log string, env []string, argv ...string) (*child, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if env != nil {
		cmd.Env = env
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(c.done) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM to the child, then SIGKILL after grace.
func (c *child) stop(grace time.Duration) {
	if c == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// spawn starts a child the harness stops on its way out, whatever happens.
func (h *harness) spawn(name, log string, env []string, argv ...string) (*child, error) {
	c, err := startChild(name, log, env, argv...)
	if err != nil {
		return nil, err
	}
	h.children = append(h.children, c)
	return c, nil
}

// edge is an nginx of the harness's, rendered from the stack's template in
// front of two upstreams, and the process (or processes) behind it.
type edge struct {
	url string   // http://listen
	ups []string // the upstreams' addresses
	// admins are the admin listeners (/metrics, pprof) of the replicas
	// behind, in the order of ups; "" where it listens on a free port.
	admins []string
	procs  []Proc // nginx, then the upstreams' processes
	stop   func()
}

// startEdge starts nginx on listen in front of ups, rendered into dir, and
// waits until probe (a path) answers 2xx through it. behind are the
// processes serving ups, already started; stop stops them too. plain: the
// edge speaks plain HTTP, its TLS lines left out (the "TLS off" variant).
func (h *harness) startEdge(ctx context.Context, name, dir, listen string, ups []string, probe string, plain bool, behind ...*child) (*edge, error) {
	stopAll := func(ngx *child) {
		if ngx != nil {
			ngx.stop(5 * time.Second)
		}
		for _, c := range behind {
			c.stop(20 * time.Second)
		}
	}
	conf, err := h.stack.renderEdge(dir, listen, ups, plain)
	if err != nil {
		stopAll(nil)
		return nil, err
	}
	ngx, err := h.spawn(name+" nginx", filepath.Join(dir, "nginx.out"), nil, "nginx", "-p", dir+"/", "-c", conf,
		"-e", filepath.Join(dir, "nginx-error.log"), "-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";")
	if err != nil {
		stopAll(nil)
		return nil, err
	}
	scheme := "https://"
	if plain {
		scheme = "http://"
	}
	e := &edge{url: scheme + listen, ups: ups, procs: []Proc{{"nginx", ngx.pid()}}, stop: func() { stopAll(ngx) }}
	if err := waitHTTP(ctx, e.url+probe, h.o.EdgeTrust, 30*time.Second); err != nil {
		e.stop()
		return nil, fmt.Errorf("%s: %w (see %s)", name, err, dir)
	}
	return e, nil
}

// stubProbe is the path a stub that answers any key is probed on.
const stubProbe = "/api?key=x"

// startStub starts two stub handlers (kvbench stub), one per upstream
// address, each with api1's or api2's environment (GOMAXPROCS included) and
// args, behind their own nginx: the baseline and the references, run as the
// stack runs its two replicas. admin, when not "", is where the first
// stub serves pprof (its CPU profile, as a replica's admin listener serves
// one). It returns once probe answers 2xx.
func (h *harness) startStub(ctx context.Context, name, listen string, ups [2]string, admin, probe string, args ...string) (*edge, error) {
	dir, err := h.scratchDir(name)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var stubs []*child
	for i, addr := range ups {
		role := fmt.Sprintf("api%d", i+1)
		argv := []string{self, "stub", "-addr", addr}
		if i == 0 && admin != "" {
			argv = append(argv, "-pprof", admin)
		}
		c, err := h.spawn(name+" stub "+role, filepath.Join(dir, "stub-"+role+".log"), h.stack.env(role), append(argv, args...)...)
		if err != nil {
			for _, s := range stubs {
				s.stop(5 * time.Second)
			}
			return nil, err
		}
		stubs = append(stubs, c)
	}
	e, err := h.startEdge(ctx, name, dir, listen, ups[:], probe, false, stubs...)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, Proc{"api1", stubs[0].pid()}, Proc{"api2", stubs[1].pid()})
	return e, nil
}

// startReplicas starts a bin/api replica on each upstream address (two or
// more), as the stack starts api1 and api2 (replica i has the environment
// of api1 or api2 in turn, GOMAXPROCS included) with env on top, behind
// their own nginx: a variant of kvstack. Replica i is role "api<i>".
//
// admins are the replicas' admin listeners (/metrics, pprof), in order; a
// replica past the end of admins, or given "", listens on any free port
// (nothing scrapes it). plain: the edge speaks plain HTTP (startEdge).
func (h *harness) startReplicas(ctx context.Context, name, listen string, ups []string, bin string, admins []string, plain bool, env ...string) (*edge, error) {
	if bin == "" {
		bin = filepath.Join(h.stack.s.BinDir, "api")
	}
	dir, err := h.scratchDir(name)
	if err != nil {
		return nil, err
	}
	var apis []*child
	stop := func() {
		for _, a := range apis {
			a.stop(5 * time.Second)
		}
	}
	for i, addr := range ups {
		role := fmt.Sprintf("api%d", i+1)
		admin := "127.0.0.1:0"
		if i < len(admins) && admins[i] != "" {
			admin = admins[i]
		}
		e := h.stack.env(fmt.Sprintf("api%d", i%2+1), append([]string{"KV_HTTP_ADDR=" + addr, "KV_ADMIN_ADDR=" + admin, "KV_INSTANCE_ID=kvbench-" + name + "-" + role}, env...)...)
		c, err := h.spawn(name+" "+role, filepath.Join(dir, role+".log"), e, bin)
		if err != nil {
			stop()
			return nil, err
		}
		apis = append(apis, c)
	}
	for _, addr := range ups {
		if err := waitHTTP(ctx, "http://"+addr+"/readyz", nil, 30*time.Second); err != nil {
			stop()
			return nil, fmt.Errorf("%s: %s: %w (see %s)", name, addr, err, dir)
		}
	}
	e, err := h.startEdge(ctx, name, dir, listen, ups, "/healthz", plain, apis...)
	if err != nil {
		return nil, err
	}
	for i, a := range apis {
		e.procs = append(e.procs, Proc{fmt.Sprintf("api%d", i+1), a.pid()})
	}
	e.admins = make([]string, len(ups))
	copy(e.admins, admins)
	return e, nil
}

// scratchDir is a directory of the run's scratch space for name.
func (h *harness) scratchDir(name string) (string, error) {
	dir := filepath.Join(h.dir, name)
	return dir, os.MkdirAll(dir, 0o755)
}

func waitHTTP(ctx context.Context, url string, trust *tls.Config, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: trust.Clone()}}
	defer client.CloseIdleConnections()
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			// 2xx: the PUT reference's stub answers every request with a 202.
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
