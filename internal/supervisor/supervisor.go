package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Supervisor is a private supervisord whose configuration, socket, pid
// file and log live under Dir.
type Supervisor struct {
	Dir    string
	rpc    *rpcClient
	exited chan struct{} // closed once a tied supervisord has exited
}

// NewSupervisor addresses the supervisord of dir (running or not).
func NewSupervisor(dir string) *Supervisor {
	return &Supervisor{Dir: dir, rpc: newRPCClient(filepath.Join(dir, "supervisor.sock"))}
}

// ConfPath is its supervisord.conf.
func (s *Supervisor) ConfPath() string { return filepath.Join(s.Dir, "supervisord.conf") }

// WriteConf renders supervisord.conf for programs; changed tells whether it
// differs from the file already there.
func (s *Supervisor) WriteConf(programs []Program) (changed bool, err error) {
	conf, err := supervisordConf(s.Dir, programs)
	if err != nil {
		return false, err
	}
	// supervisord refuses to start when a program's log directory is
	// missing: its own, and any a program names elsewhere (the engines of
	// a stack log into the stack's logs).
	dirs := []string{filepath.Join(s.Dir, "logs")}
	for _, p := range programs {
		dirs = append(dirs, filepath.Dir(p.Log))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return false, err
		}
	}
	return WriteIfChanged(s.ConfPath(), []byte(conf), 0o600) // it holds the services' URLs
}

// Running tells whether this supervisord answers on its socket.
func (s *Supervisor) Running(ctx context.Context) bool {
	v, err := s.rpc.call(ctx, "supervisor.getState")
	if err != nil {
		return false
	}
	m, _ := v.(map[string]any)
	return m["statename"] == "RUNNING"
}

// Launch starts supervisord and waits until it answers. Its environment
// is minimal: what the programs get is in the conf. Detached (the native
// stack), supervisord daemonizes and outlives us. Tied (private instances
// of a test or a campaign), it runs in the foreground as our child, in a
// process group of its own (a Ctrl-C meant for us does not reach it), and
// gets SIGTERM when we die, so that nothing private outlives its owner.
func (s *Supervisor) Launch(ctx context.Context, tied bool) error {
	out, err := os.OpenFile(filepath.Join(s.Dir, "logs", "supervisord.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	args := []string{"-c", s.ConfPath()}
	if tied {
		args = append([]string{"-n"}, args...)
	}
	cmd := exec.Command("supervisord", args...)
	cmd.Dir, cmd.Env = s.Dir, minimalEnv()
	cmd.Stdout, cmd.Stderr = out, out
	if !tied {
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("supervisord -c %s: %w (see %s)", s.ConfPath(), err, out.Name())
		}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		started := make(chan error, 1)
		s.exited = make(chan struct{})
		go func() {
			defer close(s.exited)
			// Pdeathsig follows the thread that forked: keep this one
			// for as long as supervisord runs.
			runtime.LockOSThread()
			if err := cmd.Start(); err != nil {
				started <- err
				return
			}
			started <- nil
			_ = cmd.Wait()
		}()
		if err := <-started; err != nil {
			return fmt.Errorf("supervisord -c %s: %w", s.ConfPath(), err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !s.Running(ctx) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("supervisord -c %s does not answer on its socket (see %s)", s.ConfPath(), filepath.Join(s.Dir, "logs", "supervisord.log"))
		}
		select {
		case <-s.exited:
			return fmt.Errorf("supervisord -c %s exited at once (see %s)", s.ConfPath(), out.Name())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// minimalEnv is what supervisord runs with: a PATH that finds the sbin
// tools, a HOME, a UTF-8 locale.
func minimalEnv() []string {
	path := os.Getenv("PATH")
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if !strings.Contains(":"+path+":", ":"+d+":") {
			path += ":" + d
		}
	}
	env := []string{"PATH=" + path, "LANG=C.UTF-8"}
	if h, err := os.UserHomeDir(); err == nil {
		env = append(env, "HOME="+h)
	}
	return env
}

// Shutdown stops every program (in reverse priority, each bounded by its
// stopwaitsecs) and supervisord, and waits until supervisord has exited.
func (s *Supervisor) Shutdown(ctx context.Context, timeout time.Duration) error {
	pid := s.pid()
	if _, err := s.rpc.call(ctx, "supervisor.shutdown"); err != nil {
		if !s.Running(ctx) && (pid == 0 || !alive(pid)) {
			return nil // not running
		}
		return err
	}
	deadline := time.Now().Add(timeout)
	if s.exited != nil {
		select {
		case <-s.exited:
			return nil
		case <-time.After(timeout):
			return fmt.Errorf("supervisord (pid %d) still running %s after shutdown", pid, timeout)
		}
	}
	// Without a pid file to watch, until it stops answering.
	for (pid != 0 && alive(pid)) || (pid == 0 && s.Running(ctx)) {
		if time.Now().After(deadline) {
			return fmt.Errorf("supervisord (pid %d) still running %s after shutdown", pid, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func (s *Supervisor) pid() int {
	b, err := os.ReadFile(filepath.Join(s.Dir, "supervisord.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// ProcessInfo is supervisord's view of one program.
type ProcessInfo struct {
	Name      string
	State     string // STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL, UNKNOWN
	Pid       int
	Start     time.Time
	SpawnErr  string
	LogFile   string
	ExitState int
}

// Processes is every program supervisord knows, by name.
func (s *Supervisor) Processes(ctx context.Context) (map[string]ProcessInfo, error) {
	v, err := s.rpc.call(ctx, "supervisor.getAllProcessInfo")
	if err != nil {
		return nil, err
	}
	list, _ := v.([]any)
	out := make(map[string]ProcessInfo, len(list))
	for _, e := range list {
		info := processInfo(e)
		out[info.Name] = info
	}
	return out, nil
}

// Process is supervisord's view of one program.
func (s *Supervisor) Process(ctx context.Context, name string) (ProcessInfo, error) {
	v, err := s.rpc.call(ctx, "supervisor.getProcessInfo", name)
	if err != nil {
		return ProcessInfo{}, err
	}
	return processInfo(v), nil
}

func processInfo(v any) ProcessInfo {
	m, _ := v.(map[string]any)
	str := func(k string) string { s, _ := m[k].(string); return s }
	num := func(k string) int { n, _ := m[k].(int); return n }
	return ProcessInfo{
		Name: str("name"), State: str("statename"), Pid: num("pid"),
		Start: time.Unix(int64(num("start")), 0), SpawnErr: str("spawnerr"),
		LogFile: str("stdout_logfile"), ExitState: num("exitstatus"),
	}
}

// Pid is the pid of a running program (0 when it does not run).
func (s *Supervisor) Pid(ctx context.Context, name string) (int, error) {
	info, err := s.Process(ctx, name)
	if err != nil {
		return 0, err
	}
	if info.State != "RUNNING" && info.State != "STARTING" && info.State != "STOPPING" {
		return 0, nil
	}
	return info.Pid, nil
}

// Start starts a program; with wait, it returns once supervisord counts
// it started (startsecs). Starting a running program is not an error.
func (s *Supervisor) Start(ctx context.Context, name string, wait bool) error {
	_, err := s.rpc.call(ctx, "supervisor.startProcess", name, wait)
	if isFault(err, faultAlreadyStarted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// Stop stops a program and waits until it has exited (SIGKILL after its
// stopwaitsecs). Stopping a stopped program is not an error.
func (s *Supervisor) Stop(ctx context.Context, name string) error {
	_, err := s.rpc.call(ctx, "supervisor.stopProcess", name, true)
	if isFault(err, faultNotRunning) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return nil
}

// Signal sends a signal (HUP, …) to a running program.
func (s *Supervisor) Signal(ctx context.Context, name, signal string) error {
	if _, err := s.rpc.call(ctx, "supervisor.signalProcess", name, signal); err != nil {
		return fmt.Errorf("signal %s %s: %w", signal, name, err)
	}
	return nil
}

// Kill sends SIGKILL to a running program's process group, as a crash
// would end it (a server's children with it), and waits until its main
// process is gone. supervisord, which did not ask for it, restarts it.
func (s *Supervisor) Kill(ctx context.Context, name string) (pid int, err error) {
	pid, err = s.Pid(ctx, name)
	if err != nil {
		return 0, err
	}
	if pid == 0 {
		return 0, fmt.Errorf("kill -9 %s: not running", name)
	}
	// supervisord made each program the leader of its own process group.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		return pid, fmt.Errorf("kill -9 %s (pid %d): %w", name, pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			return pid, fmt.Errorf("kill -9 %s: pid %d still alive after 10s", name, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return pid, nil
}

// processAlive is false once pid has exited, zombie included (supervisord
// reaps its children on its own schedule).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE …: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// Update applies a rewritten conf: programs no longer there are stopped and
// removed, new ones added (not started). It returns the programs whose
// section changed; the caller replaces those (see Replace).
func (s *Supervisor) Update(ctx context.Context) (changed []string, err error) {
	v, err := s.rpc.call(ctx, "supervisor.reloadConfig")
	if err != nil {
		return nil, err
	}
	// [[added, changed, removed]]
	outer, _ := v.([]any)
	if len(outer) != 1 {
		return nil, fmt.Errorf("reloadConfig: unexpected answer %v", v)
	}
	lists, _ := outer[0].([]any)
	names := func(i int) []string {
		var out []string
		if i < len(lists) {
			l, _ := lists[i].([]any)
			for _, n := range l {
				if s, ok := n.(string); ok {
					out = append(out, s)
				}
			}
		}
		return out
	}
	for _, name := range names(2) {
		if err := s.Stop(ctx, name); err != nil && !isFault(err, faultBadName) {
			return nil, err
		}
		if _, err := s.rpc.call(ctx, "supervisor.removeProcessGroup", name); err != nil {
			return nil, fmt.Errorf("remove %s: %w", name, err)
		}
	}
	for _, name := range names(0) {
		if _, err := s.rpc.call(ctx, "supervisor.addProcessGroup", name); err != nil && !isFault(err, faultAlreadyAdded) {
			return nil, fmt.Errorf("add %s: %w", name, err)
		}
	}
	return names(1), nil
}

// Replace stops a program whose conf section changed and takes its new
// definition (not started).
func (s *Supervisor) Replace(ctx context.Context, name string) error {
	if err := s.Stop(ctx, name); err != nil {
		return err
	}
	if _, err := s.rpc.call(ctx, "supervisor.removeProcessGroup", name); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if _, err := s.rpc.call(ctx, "supervisor.addProcessGroup", name); err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	return nil
}

var errNotRunning = errors.New("supervisord is not running")
