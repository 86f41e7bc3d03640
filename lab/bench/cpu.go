package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPU time per operation is the benchmark's steady figure (issue 15):
// throughput on two shared cores mostly measures the machine, while the
// CPU a process spends per operation barely moves with what else runs.
// It is read from /proc/<pid>/stat (utime + stime) before and after a run,
// for each process of a system and all its descendants: nginx's workers,
// PostgreSQL's backends, RabbitMQ's port programs. A descendant that exits
// during the run is not lost: once its parent reaps it, its time moves into
// the parent's cutime + cstime, which the sum includes too, so the total of
// a tree only ever grows.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every
// Linux architecture Go runs on (getconf CLK_TCK).
const clockTicks = 100

// procStat is what the benchmark reads of one /proc/<pid>/stat line.
type procStat struct {
	pid, ppid int
	// ticks is utime + stime + cutime + cstime: the process's own CPU and
	// that of its children it reaped.
	ticks int64
}

// parseStat reads a /proc/<pid>/stat line. The command name (field 2) is
// in parentheses and may hold spaces and parentheses itself, so the fields
// are counted from the last ')'.
func parseStat(line string) (procStat, error) {
	open := strings.IndexByte(line, '(')
	closing := strings.LastIndexByte(line, ')')
	if open < 1 || closing < open {
		return procStat{}, fmt.Errorf("stat %.40q: no (comm)", line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("stat %.40q: pid: %w", line, err)
	}
	// After ")": state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(line[closing+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("stat of %d: %d fields after comm", pid, len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("stat of %d: ppid: %w", pid, err)
	}
	s := procStat{pid: pid, ppid: ppid}
	for _, v := range f[11:15] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("stat of %d: times: %w", pid, err)
		}
		s.ticks += n
	}
	return s, nil
}

// readProcs reads the stat of every process on the machine; processes
// that exit while it reads are skipped.
func readProcs() (map[int]procStat, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	out := make(map[int]procStat, len(dirs))
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone
		}
		s, err := parseStat(string(b))
		if err != nil {
			return nil, err
		}
		out[s.pid] = s
	}
	return out, nil
}

// treeTicks is the CPU ticks of root and every process descended from it
// in procs; 0 when root is not there.
func treeTicks(procs map[int]procStat, root int) int64 {
	if _, ok := procs[root]; !ok {
		return 0
	}
	children := map[int][]int{}
	for pid, s := range procs {
		children[s.ppid] = append(children[s.ppid], pid)
	}
	var total int64
	stack := []int{root}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		total += procs[pid].ticks
		stack = append(stack, children[pid]...)
	}
	return total
}

// Proc names one measured process of a system: its role in the report
// ("nginx", "api1", …) and the pid at the root of its tree. Several
// processes may share a role (the HA topology's three RabbitMQ nodes are
// "rabbitmq"): the role's figure is their sum.
type Proc struct {
	Role string
	Pid  int
}

// Usage is the CPU each process spent during a run, by role, in seconds.
type Usage map[string]float64

// cpuSnapshot is the ticks of each role's process trees at one instant.
type cpuSnapshot map[string]int64

// snapshot reads the ticks of each role's trees now.
func snapshot(procs []Proc) (cpuSnapshot, error) {
	all, err := readProcs()
	if err != nil {
		return nil, err
	}
	return roleTicks(all, procs)
}

// roleTicks sums, for each role, the ticks of its processes' trees in all.
func roleTicks(all map[int]procStat, procs []Proc) (cpuSnapshot, error) {
	s := cpuSnapshot{}
	for _, p := range procs {
		if _, ok := all[p.Pid]; !ok {
			return nil, fmt.Errorf("%s (pid %d) is not running", p.Role, p.Pid)
		}
		s[p.Role] += treeTicks(all, p.Pid)
	}
	return s, nil
}

// since is the CPU each process spent from before to s, in seconds.
func (s cpuSnapshot) since(before cpuSnapshot) Usage {
	u := Usage{}
	for role, t := range s {
		u[role] = float64(t-before[role]) / clockTicks
	}
	return u
}

// cpuWatch measures the CPU of procs over a span of time: start it, end it.
type cpuWatch struct {
	procs  []Proc
	before cpuSnapshot
	t0     time.Time
}

func startCPU(procs []Proc) (*cpuWatch, error) {
	s, err := snapshot(procs)
	if err != nil {
		return nil, err
	}
	return &cpuWatch{procs: procs, before: s, t0: time.Now()}, nil
}

// end returns what each process spent since start.
func (w *cpuWatch) end() (Usage, error) {
	s, err := snapshot(w.procs)
	if err != nil {
		return nil, err
	}
	return s.since(w.before), nil
}

// PerOp is CPU microseconds per operation of each process of a run; it
// fails when no operation completed, which would make every figure
// meaningless.
func (u Usage) PerOp(ops float64) (map[string]float64, error) {
	if ops <= 0 {
		return nil, fmt.Errorf("CPU per operation of a run that completed %v operations", ops)
	}
	out := make(map[string]float64, len(u))
	for role, secs := range u {
		out[role] = secs * 1e6 / ops
	}
	return out, nil
}
