package supervisor_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// A stack of two trivial programs under a real supervisord: Up is
// idempotent, a changed definition restarts only that program, a program
// killed with -9 is restarted by supervisord, Down stops it all.
func TestStackUnderSupervisord(t *testing.T) {
	if testing.Short() {
		t.Skip("runs supervisord; not run with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	program := func(name string, prio int, env string) supervisor.Program {
		return supervisor.Program{
			Name: name, Command: []string{"sleep", "3600"}, Env: map[string]string{"WHICH": env},
			Priority: prio, StopWait: 5 * time.Second, Log: filepath.Join(dir, "logs", name+".log"),
		}
	}
	st := &supervisor.Stack{Dir: dir, Tied: true, StartTimeout: func() time.Duration { return 30 * time.Second },
		Programs: []supervisor.Program{program("first", 1, "a"), program("second", 2, "a")}}
	t.Cleanup(func() { _ = st.Down(context.Background()) })

	launched, err := st.Up(ctx)
	if err != nil {
		t.Fatalf("Up (needs supervisor: make setup-all): %v", err)
	}
	if !launched {
		t.Error("the first Up did not launch supervisord")
	}
	pids := func() map[string]int {
		m := map[string]int{}
		for _, n := range []string{"first", "second"} {
			pid, err := st.Supervisor().Pid(ctx, n)
			if err != nil || pid == 0 {
				t.Fatalf("%s: pid %d, %v", n, pid, err)
			}
			m[n] = pid
		}
		return m
	}
	before := pids()

	if launched, err := st.Up(ctx); err != nil || launched {
		t.Fatalf("second Up = %v, %v; want nothing to do", launched, err)
	}
	if got := pids(); got["first"] != before["first"] || got["second"] != before["second"] {
		t.Errorf("a second Up restarted something: %v → %v", before, got)
	}

	st.Programs[1] = program("second", 2, "b")
	if _, err := st.Up(ctx); err != nil {
		t.Fatal(err)
	}
	after := pids()
	if after["first"] != before["first"] || after["second"] == before["second"] {
		t.Errorf("changing second's environment: pids %v → %v, want only second's new", before, after)
	}

	killed, err := st.Supervisor().Kill(ctx, "first")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pid, _ := st.Supervisor().Pid(ctx, "first"); pid != 0 && pid != killed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first not restarted by supervisord after kill -9")
		}
		time.Sleep(50 * time.Millisecond)
	}

	last := pids()
	if err := st.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Supervisor().Running(ctx) {
		t.Error("supervisord still answers after Down")
	}
	for n, pid := range last {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("%s (pid %d) still runs after Down", n, pid)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "logs", "first.log")); err != nil {
		t.Errorf("no log for first: %v", err)
	}
}
