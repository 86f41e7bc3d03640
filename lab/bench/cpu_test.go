package bench

import (
	"math"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name, line string
		want       procStat
	}{
		{"plain", "24850 (nginx) S 24074 24850 24074 0 -1 4194560 1012 0 0 0 7 3 2 1 20 0 1 0 575447 3133440 381",
			procStat{pid: 24850, ppid: 24074, ticks: 7 + 3 + 2 + 1}},
		// comm may hold spaces and parentheses: fields count from the last ')'.
		{"odd comm", "77 (a) b (c)) R 1 77 77 0 -1 0 0 0 0 0 100 50 0 0 20 0 1 0 1 1 1",
			procStat{pid: 77, ppid: 1, ticks: 150}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.line)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "12 nginx S 1", "x (nginx) S 1 2 3", "12 (nginx) S 1 2"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
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
