package bench

import (
	"math"
	"os"
	"os/exec"
	"testing"
)

// readProcs finds this test process, under its parent, and a child that
// has spent CPU and exited counts in this process's ticks once reaped.
func TestReadProcsSeesThisProcessAndItsReapedChildren(t *testing.T) {
	before, err := readProcs()
	if err != nil {
		t.Fatal(err)
	}
	me, ok := before[os.Getpid()]
	if !ok || me.ppid != os.Getppid() {
		t.Fatalf("this process: %+v (found %v), want ppid %d", me, ok, os.Getppid())
	}
	// About 0.3 s of CPU in a child, then reaped by Run.
	if err := exec.Command("sh", "-c", `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`).Run(); err != nil {
		t.Fatal(err)
	}
	after, err := readProcs()
	if err != nil {
		t.Fatal(err)
	}
	if got := after[os.Getpid()].ticks - me.ticks; got < 10 {
		t.Errorf("this process's ticks grew by %d after a reaped child ran about 0.3 s, want 10 or more", got)
	}
}

func TestTreeTicks(t *testing.T) {
	procs := map[int]procStat{
		1:  {pid: 1, ppid: 0, ticks: 1000}, // not in the tree below
		10: {pid: 10, ppid: 1, ticks: 5},   // nginx master
		11: {pid: 11, ppid: 10, ticks: 40}, // worker
		12: {pid: 12, ppid: 10, ticks: 60}, // worker
		13: {pid: 13, ppid: 12, ticks: 1},  // a worker's child
		20: {pid: 20, ppid: 1, ticks: 7},   // another process
	}
	if got, want := treeTicks(procs, 10), int64(106); got != want {
		t.Errorf("treeTicks(10) = %d, want %d", got, want)
	}
	if got := treeTicks(procs, 99); got != 0 {
		t.Errorf("treeTicks of a missing pid = %d, want 0", got)
	}
}

// A backend that exits between two snapshots moves its time into its
// parent's cutime: the tree's total stays continuous.
func TestSnapshotDeltaSurvivesAnExitedChild(t *testing.T) {
	before := map[int]procStat{100: {pid: 100, ppid: 1, ticks: 10}, 101: {pid: 101, ppid: 100, ticks: 30}}
	// 101 ran 20 more ticks, exited and was reaped (cutime of 100 += 50);
	// 100 ran 5 more of its own.
	after := map[int]procStat{100: {pid: 100, ppid: 1, ticks: 10 + 5 + 50}}
	b := cpuSnapshot{"postgres": treeTicks(before, 100)}
	a := cpuSnapshot{"postgres": treeTicks(after, 100)}
	if got, want := a.since(b)["postgres"], 0.25; math.Abs(got-want) > 1e-9 {
		t.Errorf("CPU over the run = %v s, want %v s", got, want)
	}
}

func TestUsagePerOp(t *testing.T) {
	got, err := Usage{"api1": 0.5, "nginx": 0.25}.PerOp(5000)
	if err != nil {
		t.Fatal(err)
	}
	if got["api1"] != 100 || got["nginx"] != 50 {
		t.Errorf("PerOp = %v, want api1 100 µs, nginx 50 µs", got)
	}
	if _, err := (Usage{"api1": 1}).PerOp(0); err == nil {
		t.Error("PerOp(0): no error")
	}
}

func TestRoleTicksSumsTheProcessesOfARole(t *testing.T) {
	all := map[int]procStat{
		1: {pid: 1, ticks: 1000},
		// Three nodes of one engine, one with a child.
		21: {pid: 21, ppid: 1, ticks: 10}, 22: {pid: 22, ppid: 1, ticks: 20}, 23: {pid: 23, ppid: 1, ticks: 30},
		24: {pid: 24, ppid: 23, ticks: 4},
		30: {pid: 30, ppid: 1, ticks: 7},
	}
	got, err := roleTicks(all, []Proc{{"rabbitmq", 21}, {"rabbitmq", 22}, {"rabbitmq", 23}, {"nginx", 30}})
	if err != nil {
		t.Fatal(err)
	}
	if got["rabbitmq"] != 64 || got["nginx"] != 7 || len(got) != 2 {
		t.Errorf("roleTicks = %v, want rabbitmq 64 and nginx 7", got)
	}
	if _, err := roleTicks(all, []Proc{{"redis", 99}}); err == nil {
		t.Error("roleTicks of a process that does not run: no error")
	}
}
