package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvstack/kvstack/internal/auth/mint"
)

// Result is one measured run of a load: how many operations succeeded in
// how long, and the latency of each.
type Result struct {
	OK      int64
	Errors  int64
	Elapsed time.Duration
	lat     []time.Duration // sorted
	Status  map[int]int64   // HTTP status counts (HTTP loads only)
}

// Rate is successful operations per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// Quantile of the latencies (0 when none were recorded).
func (r Result) Quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q * float64(len(r.lat)))
	return r.lat[min(i, len(r.lat)-1)]
}

func (r Result) String() string {
	s := fmt.Sprintf("%.0f/s ok=%d err=%d in %s", r.Rate(), r.OK, r.Errors, r.Elapsed.Round(time.Millisecond))
	if len(r.lat) > 0 {
		s += fmt.Sprintf(" p50=%s p99=%s", r.Quantile(.5), r.Quantile(.99))
	}
	if len(r.Status) > 0 {
		s += fmt.Sprintf(" status=%v", r.Status)
	}
	return s
}

// Op is one operation of a worker: i counts the operations of the whole
// run. It returns the HTTP status (0 when not HTTP) and whether it counts
// as a success.
type Op func(ctx context.Context, worker int, i int64) (status int, ok bool)

// Closed runs a closed loop: workers each issue op back to back until dur
// has passed or max operations (0: no bound) were started.
func Closed(ctx context.Context, workers int, dur time.Duration, max int64, op Op) Result {
	return run(ctx, workers, dur, max, 0, op)
}

// Open issues op at a fixed total rate (per second) from workers, for dur:
// each worker keeps its own schedule and catches up when it falls behind.
func Open(ctx context.Context, workers int, dur time.Duration, rate float64, op Op) Result {
	return run(ctx, workers, dur, 0, rate, op)
}

// Paced is Closed when rate is 0, else Open with max operations at most.
func Paced(ctx context.Context, workers int, dur time.Duration, max int64, rate float64, op Op) Result {
	return run(ctx, workers, dur, max, rate, op)
}

func run(ctx context.Context, workers int, dur time.Duration, max int64, rate float64, op Op) Result {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var (
		next    atomic.Int64
		errs    atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		all     []time.Duration
		status  = map[int]int64{}
		started = time.Now()
	)
	for w := range workers {
		wg.Go(func() {
			wk := worker{id: w, op: op, max: max, next: &next, errs: &errs, st: map[int]int64{}}
			if rate > 0 {
				wk.interval = time.Duration(float64(workers) / rate * float64(time.Second))
				wk.due = started.Add(time.Duration(w) * wk.interval / time.Duration(workers))
			}
			wk.loop(ctx)
			mu.Lock()
			all = append(all, wk.lat...)
			for k, v := range wk.st {
				status[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(started)
	slices.Sort(all)
	r := Result{OK: int64(len(all)), Errors: errs.Load(), Elapsed: elapsed, lat: all}
	if len(status) > 0 {
		r.Status = status
	}
	return r
}

// worker is one goroutine of a load: it issues op back to back, or on its
// own schedule (interval > 0), until ctx ends or max operations started.
type worker struct {
	id       int
	op       Op
	max      int64
	next     *atomic.Int64 // operations started by all workers
	errs     *atomic.Int64
	interval time.Duration
	due      time.Time
	lat      []time.Duration // of the successes
	st       map[int]int64   // HTTP statuses
}

func (wk *worker) loop(ctx context.Context) {
	for ctx.Err() == nil && wk.wait(ctx) {
		i := wk.next.Add(1) - 1
		if wk.max > 0 && i >= wk.max {
			return
		}
		t0 := time.Now()
		code, ok := wk.op(ctx, wk.id, i)
		if ctx.Err() != nil && !ok {
			return // cut short by the deadline: not an error
		}
		if code != 0 {
			wk.st[code]++
		}
		if ok {
			wk.lat = append(wk.lat, time.Since(t0))
		} else {
			wk.errs.Add(1)
		}
	}
}

// wait sleeps until the next operation is due (fixed-rate loads), falling
// behind and catching up rather than skipping; false when ctx ended.
func (wk *worker) wait(ctx context.Context) bool {
	if wk.interval <= 0 {
		return true
	}
	if d := time.Until(wk.due); d > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
		}
	}
	wk.due = wk.due.Add(wk.interval)
	return true
}

// Clients gives each load worker its own HTTP client with one keep-alive
// connection from its own loopback source address (127.0.0.2, .3, …): the
// edge limits the request rate per client address, and a benchmark of N
// connections stands for N clients, not one. Every target is 127.0.0.1.
// Each carries its own token, of its own subject, too: the API limits the
// request rate and the waits per subject (KV_RATE_LIMIT,
// KV_MAX_WAITERS_PER_CLIENT).
type Clients []*http.Client

// NewClients makes one single-connection client per token, each request
// carrying its token (none when empty); an https:// URL's server is
// verified with trust (the edge's CA), over HTTP/1.1.
func NewClients(tokens []string, trust *tls.Config) Clients {
	cs := make(Clients, len(tokens))
	for i, token := range tokens {
		d := &net.Dialer{
			Timeout:   2 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/250), byte(2+i%250))},
		}
		var t http.RoundTripper = &http.Transport{
			DialContext:         d.DialContext,
			TLSClientConfig:     trust.Clone(), // a transport adds its protocols to it
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			DisableCompression:  true,
			IdleConnTimeout:     30 * time.Second,
		}
		if token != "" {
			t = mint.Bearer(t, token)
		}
		cs[i] = &http.Client{Timeout: 10 * time.Second, Transport: t}
	}
	return cs
}

// Close drops the idle connections.
func (cs Clients) Close() {
	for _, c := range cs {
		c.CloseIdleConnections()
	}
}

// Do sends req with worker w's client and drains the response.
func (cs Clients) Do(w int, req *http.Request) (int, error) {
	resp, err := cs[w%len(cs)].Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// Stats is the median, min and max of one figure over repetitions.
type Stats struct{ Median, Min, Max float64 }

// Summarise returns the median, min and max of xs.
func Summarise(xs []float64) Stats {
	if len(xs) == 0 {
		return Stats{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stats{Median: m, Min: s[0], Max: s[len(s)-1]}
}
