package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Log prints a progress line to stderr.
func Log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kvbench %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// othersTesting lists the test processes of other people on this machine:
// a benchmark on 2 cores would disturb them, and they it.
func othersTesting() string {
	out, _ := exec.Command("pgrep", "-af", `go test|e2e.test|\.test `).Output()
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, "pgrep") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
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

// pidOn returns the pid of the process listening on the TCP port.
func pidOn(port string) (int, error) {
	out, err := exec.Command("ss", "-ltnpH", "sport = :"+port).Output()
	if err != nil {
		return 0, fmt.Errorf("ss: %w", err)
	}
	// nginx's workers listen beside their master: the lowest pid is it.
	lowest := 0
	for _, m := range ssPid.FindAllSubmatch(out, -1) {
		if pid, err := strconv.Atoi(string(m[1])); err == nil && (lowest == 0 || pid < lowest) {
			lowest = pid
		}
	}
	if lowest == 0 {
		return 0, fmt.Errorf("no process listens on port %s", port)
	}
	return lowest, nil
}

// procKiB reads a "Vm…:  N kB" field of /proc/<pid>/status.
func procKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// loadAvg is /proc/loadavg's 1, 5 and 15 minute averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
