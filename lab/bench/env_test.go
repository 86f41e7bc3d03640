package bench

import (
	"net"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestProcMemKiBOfThisProcess(t *testing.T) {
	rss, hwm, err := procMemKiB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1024 || hwm < rss {
		t.Errorf("VmRSS %d KiB, VmHWM %d KiB: want at least 1 MiB and a peak no lower", rss, hwm)
	}
}

func TestLoadAvgHasThreeFigures(t *testing.T) {
	if got := strings.Fields(loadAvg()); len(got) != 3 {
		t.Errorf("loadAvg() = %q, want three averages", got)
	}
}

func TestEldestIsTheListenersRoot(t *testing.T) {
	parents := map[int]int{2240: 1, 1774: 2240, 2250: 2240, 900: 1, 950: 900}
	parent := func(pid int) int {
		if ppid, ok := parents[pid]; ok {
			return ppid
		}
		return -1 // exited
	}
	for _, c := range []struct {
		name string
		pids []int
		want int
	}{
		{"postmaster and a wrapped-around backend", []int{1774, 2240}, 2240},
		{"nginx master and workers", []int{2250, 2240, 1774}, 2240},
		{"one process", []int{2240}, 2240},
		{"two roots: the lowest", []int{2240, 900, 950}, 900},
		{"a backend that exited since ss listed it", []int{1700, 2240}, 2240},
		{"only pids that exited", []int{1800, 1700}, 1700},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := eldest(c.pids, parent); got != c.want {
				t.Errorf("eldest(%v) = %d, want %d", c.pids, got, c.want)
			}
		})
	}
}

func TestPidOnFindsThisListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	got, err := pidOn(port)
	if err != nil {
		t.Fatal(err)
	}
	if got != os.Getpid() {
		t.Errorf("pidOn(%s) = %d, want this process %d", port, got, os.Getpid())
	}
}

// A test queued on the stack's lock is not running: the bench holding
// the lock waited for it while it waited for the bench.
func TestTestsInSkipsWrappersWaitingForTheLock(t *testing.T) {
	out := `30288 timeout 870 flock -o /tmp/kvstack-stack.lock go test -vet=off -count=1 -timeout 14m ./...
30290 flock -o /tmp/kvstack-stack.lock go test -vet=off -count=1 -timeout 14m ./...
30098 /tmp/go-build618440658/b219/native.test -test.paniconexit0 -test.timeout=10m0s -test.count=1
30101 go test -count=1 ./lab/native/...
30300 pgrep -af go test|e2e.test|\.test 
`
	got := testsIn(out)
	want := []string{
		"30098 /tmp/go-build618440658/b219/native.test -test.paniconexit0 -test.timeout=10m0s -test.count=1",
		"30101 go test -count=1 ./lab/native/...",
	}
	if !slices.Equal(got, want) {
		t.Errorf("testsIn:\n got %q\nwant %q", got, want)
	}
	if got := testsIn(""); len(got) != 0 {
		t.Errorf("testsIn of nothing = %q", got)
	}
}
