package supervisor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Stack is a set of programs run by one private supervisord in Dir.
type Stack struct {
	Dir      string
	Programs []Program
	// StartTimeout bounds how long a program gets to become healthy, read
	// at each wait (a bound that follows the machine's load, say); nil
	// gives a minute.
	StartTimeout func() time.Duration
	// Log gets one line per step ("==> api1: started …"); nil discards.
	Log io.Writer
	// Tied makes the supervisord a child of this process that stops with
	// it (private instances); otherwise it is a daemon (the native stack).
	Tied bool
	// Before, when set, runs before Up starts the programs of each
	// priority (creating a database once its engine answers, say).
	Before func(ctx context.Context, priority int) error

	sup *Supervisor
}

// Supervisor is the stack's supervisord.
func (st *Stack) Supervisor() *Supervisor {
	if st.sup == nil {
		st.sup = NewSupervisor(st.Dir)
	}
	return st.sup
}

func (st *Stack) logf(format string, args ...any) {
	if st.Log != nil {
		fmt.Fprintf(st.Log, "==> "+format+"\n", args...)
	}
}

// Program returns the program of that name.
func (st *Stack) Program(name string) (Program, bool) {
	for _, p := range st.Programs {
		if p.Name == name {
			return p, true
		}
	}
	return Program{}, false
}

// Up makes the stack run, idempotently: it writes supervisord.conf, starts
// supervisord when it does not run (launched), applies a changed conf, then
// starts what is down, priority by priority, each priority healthy before
// the next. A program whose section changed, or whose Go binary was
// rebuilt, is restarted one at a time, healthy before the next, so that
// nginx always has a replica to route to.
func (st *Stack) Up(ctx context.Context) (launched bool, err error) {
	sup := st.Supervisor()
	if _, err := sup.WriteConf(st.Programs); err != nil {
		return false, err
	}
	var changed []string
	if !sup.Running(ctx) {
		st.logf("supervisord: starting (%s)", sup.ConfPath())
		if err := sup.Launch(ctx, st.Tied); err != nil {
			return false, err
		}
		launched = true
	} else if changed, err = sup.Update(ctx); err != nil {
		return false, fmt.Errorf("supervisord: apply %s: %w", sup.ConfPath(), err)
	}
	procs, err := sup.Processes(ctx)
	if err != nil {
		return launched, err
	}
	for _, name := range st.ordered(changed) {
		if err := st.replace(ctx, name, procs[name].State == "RUNNING", "its definition changed"); err != nil {
			return launched, err
		}
	}
	for _, prio := range st.priorities() {
		var group []Program
		for _, p := range st.Programs {
			if p.Priority == prio && !p.Manual {
				group = append(group, p)
			}
		}
		if st.Before != nil {
			if err := st.Before(ctx, prio); err != nil {
				return launched, err
			}
		}
		if err := st.startGroup(ctx, group); err != nil {
			return launched, err
		}
	}
	for _, p := range st.Programs {
		if err := st.restartIfRebuilt(ctx, p); err != nil {
			return launched, err
		}
	}
	return launched, nil
}

// ordered keeps the names of programs of the stack, in stack order.
func (st *Stack) ordered(names []string) []string {
	var out []string
	for _, p := range st.Programs {
		if slices.Contains(names, p.Name) {
			out = append(out, p.Name)
		}
	}
	return out
}

func (st *Stack) priorities() []int {
	var ps []int
	for _, p := range st.Programs {
		if !slices.Contains(ps, p.Priority) {
			ps = append(ps, p.Priority)
		}
	}
	sort.Ints(ps)
	return ps
}

// startGroup starts every program of group that does not run, together,
// and waits until each answers its health check.
func (st *Stack) startGroup(ctx context.Context, group []Program) error {
	sup := st.Supervisor()
	procs, err := sup.Processes(ctx)
	if err != nil {
		return err
	}
	var started []string
	for _, p := range group {
		switch procs[p.Name].State {
		case "RUNNING", "STARTING":
			continue
		}
		if err := sup.Start(ctx, p.Name, false); err != nil {
			return err
		}
		started = append(started, p.Name)
	}
	for _, p := range group {
		if err := st.WaitHealthy(ctx, p.Name); err != nil {
			return err
		}
		pid, _ := sup.Pid(ctx, p.Name)
		if slices.Contains(started, p.Name) {
			st.logf("%s: started (pid %d) on %s, log %s", p.Name, pid, p.Addr, p.Log)
		} else {
			st.logf("%s: up (pid %d) on %s", p.Name, pid, p.Addr)
		}
	}
	return nil
}

// WaitHealthy waits until a program runs in supervisord and answers its
// health check; it fails, naming the program and its log, when
// supervisord gave up on it or StartTimeout passed.
func (st *Stack) WaitHealthy(ctx context.Context, name string) error {
	p, ok := st.Program(name)
	if !ok {
		return fmt.Errorf("no program %s", name)
	}
	bound := time.Minute
	if st.StartTimeout != nil {
		bound = orDuration(st.StartTimeout(), bound)
	}
	deadline := time.Now().Add(bound)
	var last error
	for {
		info, err := st.Supervisor().Process(ctx, name)
		switch {
		case err != nil:
			last = err
		case info.State == "FATAL":
			return fmt.Errorf("%s: supervisord gave up starting it (%s)%s", name, orString(info.SpawnErr, "it kept exiting"), Tail(p.Log))
		case info.State != "RUNNING" && info.State != "STARTING" && info.State != "BACKOFF":
			return fmt.Errorf("%s: %s, not starting%s", name, info.State, Tail(p.Log))
		case info.State != "RUNNING":
			// Started counts once it stayed up startsecs (supervisord).
			last = fmt.Errorf("state %s", info.State)
		case p.Health == nil:
			return nil
		default:
			if last = p.Health.Check(ctx); last == nil {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: not healthy within %s (%v)%s", name, bound, last, Tail(p.Log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Tail is the end of a log, for an error message.
func Tail(log string) string {
	b, err := os.ReadFile(log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return fmt.Sprintf("; see %s, which ends:\n%s", log, strings.Join(lines, "\n"))
}

// replace takes a program's new definition; when it was running, it is
// started again and must be healthy before Up goes on.
func (st *Stack) replace(ctx context.Context, name string, running bool, why string) error {
	if running {
		st.logf("%s: %s; restarting it", name, why)
	}
	if err := st.Supervisor().Replace(ctx, name); err != nil {
		return err
	}
	if p, _ := st.Program(name); !running || p.Manual {
		return nil
	}
	if err := st.Supervisor().Start(ctx, name, false); err != nil {
		return err
	}
	return st.WaitHealthy(ctx, name)
}

// restartIfRebuilt restarts a running Go program whose binary changed
// since it started: /proc/PID/exe is the image it runs, even once the file
// was replaced by a build.
func (st *Stack) restartIfRebuilt(ctx context.Context, p Program) error {
	if p.Binary == "" {
		return nil
	}
	pid, err := st.Supervisor().Pid(ctx, p.Name)
	if err != nil || pid == 0 {
		return err
	}
	running, err1 := fileSum(fmt.Sprintf("/proc/%d/exe", pid))
	built, err2 := fileSum(p.Binary)
	if err := errors.Join(err1, err2); err != nil || running == built {
		return err
	}
	st.logf("%s: %s changed since it started (pid %d); restarting it", p.Name, p.Binary, pid)
	if err := st.Supervisor().Stop(ctx, p.Name); err != nil {
		return err
	}
	if err := st.Supervisor().Start(ctx, p.Name, false); err != nil {
		return err
	}
	if err := st.WaitHealthy(ctx, p.Name); err != nil {
		return err
	}
	pid, _ = st.Supervisor().Pid(ctx, p.Name)
	st.logf("%s: started (pid %d) on %s", p.Name, pid, p.Addr)
	return nil
}

func fileSum(path string) ([32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), nil
}

// Down stops every program and supervisord; nothing else (the services a
// stack merely uses) is touched.
func (st *Stack) Down(ctx context.Context) error {
	sup := st.Supervisor()
	if !sup.Running(ctx) {
		st.logf("supervisord of %s is not running: nothing to stop", st.Dir)
		return nil
	}
	var longest time.Duration
	for _, p := range st.Programs {
		longest = max(longest, orDuration(p.StopWait, 20*time.Second))
	}
	st.logf("stopping every program and supervisord (%s)", st.Dir)
	// Programs stop one after another, each within its stopwaitsecs.
	return sup.Shutdown(ctx, time.Duration(len(st.Programs))*longest+30*time.Second)
}

// Status is one program's line in `status`.
type Status struct {
	Program
	State   string // supervisord's
	Pid     int
	Uptime  time.Duration
	Healthy bool
	Problem string // why it is not healthy
}

// Statuses is every program's state and health, in stack order.
func (st *Stack) Statuses(ctx context.Context) ([]Status, error) {
	sup := st.Supervisor()
	if !sup.Running(ctx) {
		return nil, errNotRunning
	}
	procs, err := sup.Processes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(st.Programs))
	for _, p := range st.Programs {
		info, ok := procs[p.Name]
		s := Status{Program: p, State: info.State, Pid: info.Pid}
		switch {
		case !ok:
			s.State, s.Problem = "ABSENT", "not in supervisord's conf yet (make up)"
		case info.State == "RUNNING":
			s.Uptime = time.Since(info.Start).Round(time.Second)
			if p.Health == nil {
				s.Healthy = true
			} else if err := p.Health.Check(ctx); err != nil {
				s.Problem = err.Error()
			} else {
				s.Healthy = true
			}
		default:
			if info.State != "STARTING" && info.State != "STOPPING" {
				s.Pid = 0
			}
			s.Problem = orString(info.SpawnErr, strings.ToLower(info.State))
		}
		out = append(out, s)
	}
	return out, nil
}

// WriteIfChanged writes data unless the file already holds it, atomically.
func WriteIfChanged(path string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}
