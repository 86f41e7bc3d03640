package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// Private is a set of private instances under a supervisord of their own in
// Dir, tied to this process: should it die without Close, supervisord gets
// SIGTERM and stops them.
type Private struct {
	Dir     string
	stack   *supervisor.Stack
	engines []Engine
}

// Start initialises each engine and runs them all under a new supervisord
// in dir, waiting until each answers (each within StartTimeout, taken at
// this call).
func Start(ctx context.Context, dir string, log io.Writer, engines ...Engine) (*Private, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Engines running as their own users must reach their directories.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	p := newPrivate(dir, log)
	if err := p.Add(ctx, engines...); err != nil {
		return p, errors.Join(err, p.Close(context.Background()))
	}
	return p, nil
}

// newPrivate is a Private in dir with no engines yet, whose supervisor
// gives each engine StartTimeout, read at each wait: a node restarted or
// added under a heavier load gets that load's bound, not its first boot's.
func newPrivate(dir string, log io.Writer) *Private {
	p := &Private{Dir: dir, stack: &supervisor.Stack{Dir: dir, StartTimeout: StartTimeout, Log: log, Tied: true}}
	p.stack.Before = func(ctx context.Context, priority int) error { return InitBefore(p.engines)(ctx, priority) }
	return p
}

// Add starts more engines under the same supervisor (the others keep
// running), each initialised just before its priority's group starts.
func (p *Private) Add(ctx context.Context, engines ...Engine) error {
	for _, e := range engines {
		p.engines = append(p.engines, e)
		p.stack.Programs = append(p.stack.Programs, e.Program())
	}
	_, err := p.stack.Up(ctx)
	return err
}

// InitBefore is the ordering rule of engines under one supervisor, for
// supervisor.Stack's Before hook: the engines whose program has this priority
// are initialised just before their group starts, once every lower
// priority answers. So a standby (priority 2) is made from a primary
// (priority 1) that already runs. Init is a no-op for an engine already
// initialised, so the hook may run at every Up.
func InitBefore(engines []Engine) func(ctx context.Context, priority int) error {
	return func(ctx context.Context, priority int) error {
		for _, e := range engines {
			if e.Program().Priority != priority {
				continue
			}
			if err := e.Init(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// Stack is the supervisor's stack, for programs of other kinds beside the
// engines (the chaos campaign's kvstack processes).
func (p *Private) Stack() *supervisor.Stack { return p.stack }

// Stop stops an instance cleanly (its stop signal, SIGKILL after its stop
// timeout); the supervisor does not restart it.
func (p *Private) Stop(ctx context.Context, name string) error {
	return p.stack.Supervisor().Stop(ctx, name)
}

// Start starts a stopped instance and waits until it answers.
func (p *Private) Start(ctx context.Context, name string) error {
	if err := p.stack.Supervisor().Start(ctx, name, false); err != nil {
		return err
	}
	return p.stack.WaitHealthy(ctx, name)
}

// Kill sends SIGKILL to an instance's process group, as a crash would; the
// supervisor restarts it by itself. It returns the pid killed.
func (p *Private) Kill(ctx context.Context, name string) (int, error) {
	return p.stack.Supervisor().Kill(ctx, name)
}

// Fence kills an instance (SIGKILL to its process group) and keeps it
// down, as a machine that is lost: the supervisor does not restart it
// until Start.
func (p *Private) Fence(ctx context.Context, name string) error {
	return fence(ctx, p.stack.Supervisor(), name)
}

// fence stops a program at once and for good, whatever it was doing,
// without its supervisor ever seeing a crash to heal: the process group
// is frozen (SIGSTOP), the supervisor is told to stop it, and once the
// supervisor counts it stopping (so an exit is expected, and never
// restarted), the group gets SIGKILL. Killing first and stopping after
// leaves a window in which the supervisor restarts the program; a
// restarted Patroni, killed again at once, can leave behind a PostgreSQL
// it had just started (in a session of its own) and a leader key it had
// just renewed, which is no longer a lost machine.
func fence(ctx context.Context, sup *supervisor.Supervisor, name string) error {
	freeze(ctx, sup, name)
	stopped := make(chan error, 1)
	go func() { stopped <- sup.Stop(ctx, name) }()
	for {
		if info, err := sup.Process(ctx, name); err == nil && info.State == "STOPPING" && info.Pid > 0 {
			_ = syscall.Kill(-info.Pid, syscall.SIGKILL)
		}
		select {
		case err := <-stopped:
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freeze sends SIGSTOP to a running program's process group: it does
// nothing more, and its supervisor still counts it running.
func freeze(ctx context.Context, sup *supervisor.Supervisor, name string) {
	if pid, err := sup.Pid(ctx, name); err == nil && pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGSTOP)
	}
}

// Pid is an instance's pid (0 when it does not run).
func (p *Private) Pid(ctx context.Context, name string) (int, error) {
	return p.stack.Supervisor().Pid(ctx, name)
}

// WaitHealthy waits until an instance runs and answers.
func (p *Private) WaitHealthy(ctx context.Context, name string) error {
	return p.stack.WaitHealthy(ctx, name)
}

// Close stops every instance and the supervisor, then removes Dir.
func (p *Private) Close(ctx context.Context) error {
	if err := p.stack.Down(ctx); err != nil {
		return fmt.Errorf("stop the private instances in %s: %w", p.Dir, err)
	}
	return os.RemoveAll(p.Dir)
}
