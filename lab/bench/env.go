package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// Log prints a progress line to stderr.
func Log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kvbench %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// othersTesting lists the test processes of other people on this machine:
// a benchmark on 2 cores would disturb them, and they it.
func othersTesting() string {
	out, _ := exec.Command("pgrep", "-af", `go test|e2e.test|\.test `).Output()
	return strings.Join(testsIn(string(out)), "; ")
}

// testsIn are the lines of pgrep -af's out that are tests running: not
// pgrep itself, and not a wrapper waiting to start one (`flock -o
// /tmp/kvstack-stack.lock go test …`, `timeout N flock …`), whose test,
// once started, is a process of its own. A test queued on the stack's
// lock that the bench holds would otherwise keep the bench waiting for
// it, and it for the bench, until its timeout (7 December, 14:54).
func testsIn(out string) []string {
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		_, cmd, _ := strings.Cut(strings.TrimSpace(l), " ")
		prog, _, _ := strings.Cut(cmd, " ")
		if l == "" || strings.Contains(l, "pgrep") || prog == "flock" || prog == "timeout" {
			continue
		}
		lines = append(lines, l)
	}
	return lines
}

// WaitQuiet polls until no one else's tests run, or ctx ends.
func WaitQuiet(ctx context.Context) error {
	said := false
	for {
		who := othersTesting()
		if who == "" {
			return nil
		}
		if !said {
			Log("waiting for other tests to finish: %.200s", who)
			said = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

var ssPid = regexp.MustCompile(`pid=(\d+)`)

// pidOn returns the pid of the process listening on the TCP port: of
// those ss lists, the one whose parent is not listed (nginx's workers
// listen beside their master; a PostgreSQL backend holds the postmaster's
// socket from its fork until it closes it).
func pidOn(port string) (int, error) {
	out, err := exec.Command("ss", "-ltnpH", "sport = :"+port).Output()
	if err != nil {
		return 0, fmt.Errorf("ss: %w", err)
	}
	var pids []int
	for _, m := range ssPid.FindAllSubmatch(out, -1) {
		if pid, err := strconv.Atoi(string(m[1])); err == nil {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return 0, fmt.Errorf("no process listens on port %s", port)
	}
	return eldest(pids, parentOf), nil
}

// eldest is the pid of pids whose parent is none of them, the lowest such
// when several are; 0 for none. Not simply the lowest pid: once pids wrap
// around, a backend just forked can have a lower pid than its postmaster
// (a bench failed on "postgres (pid 1774) is not running", the
// postmaster being 2240). A pid whose parent is unknown (parent gives
// -1: it exited since ss listed it, as a short-lived backend does) is
// taken only when no other is left.
func eldest(pids []int, parent func(int) int) int {
	best, gone := 0, 0
	for _, pid := range pids {
		switch ppid := parent(pid); {
		case ppid < 0:
			if gone == 0 || pid < gone {
				gone = pid
			}
		case slices.Contains(pids, ppid):
		case best == 0 || pid < best:
			best = pid
		}
	}
	if best == 0 {
		return gone
	}
	return best
}

// parentOf is pid's parent's pid, -1 when it cannot be read (it exited).
func parentOf(pid int) int {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return -1
	}
	st, err := p.Stat()
	if err != nil {
		return -1
	}
	return st.PPID
}

// procMemKiB is the VmRSS and VmHWM (its peak) of pid, in KiB.
func procMemKiB(pid int) (rss, hwm int64, err error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, 0, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, 0, err
	}
	return int64(st.VmRSS / 1024), int64(st.VmHWM / 1024), nil
}

// loadAvg is /proc/loadavg's 1, 5 and 15 minute averages.
func loadAvg() string {
	proc, err := procfs.NewDefaultFS()
	if err != nil {
		return "unknown"
	}
	a, err := proc.LoadAvg()
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.2f %.2f %.2f", a.Load1, a.Load5, a.Load15)
}
