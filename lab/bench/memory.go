package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// 8. API memory: the peak, and the growth while streaming a large listing.
func (h *harness) memory(ctx context.Context) (*Section, error) {
	o := h.o
	sec := &Section{Title: "Memory of the API replicas",
		Setup: fmt.Sprintf("Peak: VmHWM of api1 and api2 (/proc/<pid>/status) after every scenario above. Listing: %d rows seeded under bench:all: in the stack's kv_store, then GET /api/all streamed through nginx and read to the end; "+
			"growth is the highest VmRSS sampled every 20 ms during the listing minus VmRSS before it, for the replica that served it.", o.ListRows)}
	var pids [2]int
	for i, p := range o.APIPorts {
		pid, err := pidOn(p)
		if err != nil {
			return sec, fmt.Errorf("api on :%s: %w", p, err)
		}
		pids[i] = pid
	}
	t0 := time.Now()
	if err := h.seed(ctx, "bench:all:", 0, o.ListRows); err != nil {
		return sec, err
	}
	_, _ = h.pool.Exec(ctx, `ANALYZE kv_store`)
	Log("memory: seeded %d rows in %s", o.ListRows, time.Since(t0).Round(time.Millisecond))
	l, err := h.listAll(ctx, pids)
	if err != nil {
		return sec, err
	}
	var hwm [2]int64
	for i, pid := range pids {
		_, hwm[i], _ = procMemKiB(pid)
	}
	Log("memory: listing %d bytes in %s; RSS before %v peak %v KiB; VmHWM %v KiB", l.bytes, l.took.Round(time.Millisecond), l.before, l.peak, hwm)
	growth := max(l.peak[0]-l.before[0], l.peak[1]-l.before[1])
	sec.Figures = []Figure{
		{"api1 VmHWM", "MiB", []float64{mib(hwm[0])}}, {"api2 VmHWM", "MiB", []float64{mib(hwm[1])}},
		{"API RSS growth during GET /api/all", "MiB", []float64{mib(growth)}},
		{"listing size", "MiB", []float64{mib(l.bytes / 1024)}},
		{"listing rate", "rows/s", []float64{float64(o.ListRows) / l.took.Seconds()}},
	}
	sec.Notes = append(sec.Notes, fmt.Sprintf("VmRSS before the listing: api1 %.1f MiB, api2 %.1f MiB; highest during: %.1f / %.1f MiB", mib(l.before[0]), mib(l.before[1]), mib(l.peak[0]), mib(l.peak[1])))
	sec.Targets = []Target{
		Below("API RSS at peak (VmHWM, higher replica), MiB", mib(max(hwm[0], hwm[1])), 100, "%.1f"),
		Below(fmt.Sprintf("API RSS growth over GET /api/all of %d keys, MiB", o.ListRows), mib(growth), 50, "%.1f"),
	}
	return sec, nil
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// listing is one GET /api/all read to the end, and the replicas' RSS
// before and at their highest during it.
type listing struct {
	bytes        int64
	took         time.Duration
	before, peak [2]int64 // KiB
}

// listAll streams GET /api/all through the edge while sampling the RSS of
// the replicas every 20 ms.
func (h *harness) listAll(ctx context.Context, pids [2]int) (listing, error) {
	var l listing
	for i, pid := range pids {
		l.before[i], _, _ = procMemKiB(pid)
		l.peak[i] = l.before[i]
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { sampleRSS(pids, &l.peak, stop) })
	lctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(lctx, http.MethodGet, h.o.Nginx+"/api/all", nil)
	t1 := time.Now()
	resp, err := h.edge.Do(req)
	if err == nil {
		l.bytes, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	l.took = time.Since(t1)
	close(stop)
	wg.Wait()
	if err != nil {
		return l, fmt.Errorf("GET /api/all: %w", err)
	}
	if resp.StatusCode != 200 {
		return l, fmt.Errorf("GET /api/all: status %d", resp.StatusCode)
	}
	return l, nil
}

// sampleRSS keeps in peak the highest VmRSS of each pid until stop closes.
func sampleRSS(pids [2]int, peak *[2]int64, stop <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for i, pid := range pids {
			if v, _, err := procMemKiB(pid); err == nil && v > peak[i] {
				peak[i] = v
			}
		}
	}
}
