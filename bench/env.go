package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvstack/kvstack/deploy/native"
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

// stack starts or stops one process of the running native stack through
// its supervisord (deploy/native), as `bin/stack start|stop NAME` does.
func stack(ctx context.Context, root, action, name string) error {
	s, err := native.Load(root, os.Environ())
	if err != nil {
		return err
	}
	st := native.NewStack(s, os.Stderr)
	switch action {
	case "stop":
		return st.Supervisor().Stop(ctx, name)
	case "start":
		if err := st.Supervisor().Start(ctx, name, false); err != nil {
			return err
		}
		return st.WaitHealthy(ctx, name)
	}
	return fmt.Errorf("stack: no action %q", action)
}

var ssPid = regexp.MustCompile(`pid=(\d+)`)

// pidOn returns the pid of the process listening on the TCP port.
func pidOn(port string) (int, error) {
	out, err := exec.Command("ss", "-ltnpH", "sport = :"+port).Output()
	if err != nil {
		return 0, fmt.Errorf("ss: %w", err)
	}
	m := ssPid.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no process listens on port %s", port)
	}
	return strconv.Atoi(string(m[1]))
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

// scrape fetches a Prometheus text exposition.
func scrape(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	// Plain text: gzip would cost the measured process CPU on every poll.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// sumMetric adds up every sample of the named series (all label values).
func sumMetric(text, name string) float64 {
	var sum float64
	for l := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(l, name) {
			continue
		}
		rest := l[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

var leLabel = regexp.MustCompile(`le="([^"]+)"`)

// buckets returns a histogram's cumulative bucket counts by upper bound,
// summed over its other labels.
func buckets(text, name string) map[float64]float64 {
	out := map[float64]float64{}
	for l := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(l, name+"_bucket{") {
			continue
		}
		m := leLabel.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		le, err := strconv.ParseFloat(m[1], 64) // "+Inf" parses
		if err != nil {
			continue
		}
		f := strings.Fields(l[strings.LastIndex(l, "}")+1:])
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			out[le] += v
		}
	}
	return out
}

// Hist is the change of a cumulative histogram between two scrapes.
type Hist struct {
	Bounds []float64 // ascending, +Inf last
	Counts []float64 // cumulative
}

func histDelta(before, after map[float64]float64) Hist {
	var h Hist
	for le := range after {
		h.Bounds = append(h.Bounds, le)
	}
	sort.Float64s(h.Bounds)
	for _, le := range h.Bounds {
		h.Counts = append(h.Counts, after[le]-before[le])
	}
	return h
}

// Total is the number of observations.
func (h Hist) Total() float64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

// Quantile interpolates linearly inside the bucket, as Prometheus'
// histogram_quantile does.
func (h Hist) Quantile(q float64) float64 {
	total := h.Total()
	if total == 0 {
		return 0
	}
	rank := q * total
	lower, prev := 0.0, 0.0
	for i, le := range h.Bounds {
		if h.Counts[i] >= rank {
			if le > 1e300 { // +Inf: the highest finite bound is all we know
				return lower
			}
			return lower + (le-lower)*(rank-prev)/(h.Counts[i]-prev)
		}
		lower, prev = le, h.Counts[i]
	}
	return lower
}

// FractionWithin is the share of observations ≤ bound (a bucket bound).
func (h Hist) FractionWithin(bound float64) float64 {
	for i, le := range h.Bounds {
		if le == bound {
			return h.Counts[i] / h.Total()
		}
	}
	return 0
}
