package observability

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// replica is a stand-in API replica: 202 to writes, 405 to methods the API
// does not know, the status of ?status=N to reads, or a dropped connection
// while broken (nginx then retries a read on the other replica).
type replica struct {
	addr   string
	broken atomic.Bool
	hits   atomic.Int64
}

func startReplica(t *testing.T) *replica {
	t.Helper()
	r := &replica{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		io.Copy(io.Discard, req.Body)
		if r.broken.Load() {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		status := http.StatusOK
		switch req.Method {
		case http.MethodGet, http.MethodHead:
			fmt.Sscan(req.URL.Query().Get("status"), &status)
		case http.MethodPut, http.MethodDelete:
			status = http.StatusAccepted
		default:
			status = http.StatusMethodNotAllowed
		}
		w.WriteHeader(status)
		io.WriteString(w, `{}`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// requireCommands fails the test, naming them, when programs are missing:
// `make setup-all` (scripts/services.sh ensure all) installs them.
func requireCommands(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s is not installed (make setup-all installs it): %v", n, err)
		}
	}
}

// edge is a private nginx rendered from nginx/nginx.conf.template.
type edge struct {
	url, status, accessLog string
}

func startEdge(t *testing.T, api1, api2 string) edge {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o777) // nginx's workers (nobody) write their temp files here
	e := edge{url: "http://" + freeAddr(t), status: freeAddr(t), accessLog: filepath.Join(dir, "access.log")}
	vars := map[string]string{
		"NGINX_LISTEN": strings.TrimPrefix(e.url, "http://"), "NGINX_STATUS_LISTEN": e.status,
		"API1_ADDR": api1, "API2_ADDR": api2, "KV_MAX_BODY_BYTES": "1048576",
		"NGINX_RATE_LIMIT": "10000r/s", "NGINX_RATE_BURST": "20000",
		"NGINX_ACCESS_LOG": e.accessLog, "NGINX_ERROR_LOG": filepath.Join(dir, "error.log"),
	}
	tmpl, err := os.ReadFile("../nginx/nginx.conf.template")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(tmpl)
	for k, v := range vars {
		conf = strings.ReplaceAll(conf, "${"+k+"}", v)
	}
	if strings.Contains(conf, "${") {
		t.Fatalf("nginx/nginx.conf.template uses a variable this test does not set")
	}
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("nginx", "-p", dir+"/", "-c", confFile, "-e", vars["NGINX_ERROR_LOG"],
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() { stop(cmd) })
	// Probed on stub_status, which logs nothing: the access log holds only
	// the test's requests.
	waitFor(t, "nginx on "+e.status, func() error {
		_, err := http.Get("http://" + e.status + "/stub_status")
		return err
	})
	return e
}

// stop interrupts a program and waits for it, killing it after 10 s.
func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitFor(t *testing.T, what string, try func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e edge) do(t *testing.T, method, path string, want int) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(`{"key":"k","value":"v"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d", method, path, resp.StatusCode, want)
	}
}

// families parses a Prometheus text exposition.
func families(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, text)
	}
	return fams
}

// value is the counter, gauge or histogram count of the series of family
// name whose labels are exactly want (0 when there is none).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
series:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue series
			}
		}
		return sample(m)
	}
	return 0
}

// sample is a series' counter, gauge or untyped value, or a histogram's count.
func sample(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// The edge's metrics, from an nginx rendered from the project's template in
// front of two stand-in replicas: mtail's program counts every request of
// its access log by route, method and status (client-made paths and
// methods folded into "other"), times them into the histogram the SLOs
// read, and counts a read nginx retried on the other replica;
// prometheus-nginx-exporter reads stub_status on the loopback-only server,
// which the public listener does not route.
func TestEdgeMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx, mtail and prometheus-nginx-exporter; not run with -short (make test runs it)")
	}
	requireCommands(t, "nginx", "mtail", "prometheus-nginx-exporter")
	a, b := startReplica(t), startReplica(t)
	e := startEdge(t, a.addr, b.addr)

	// One replica drops connections: reads go on to the other (200), each
	// try on the broken one a retry.
	a.broken.Store(true)
	gets := 0
	for a.hits.Load() == 0 && gets < 10 {
		e.do(t, http.MethodGet, "/api?key=k", http.StatusOK)
		gets++
	}
	a.broken.Store(false)
	retries := a.hits.Load()
	if retries == 0 {
		t.Fatal("nginx never sent a read to the broken replica")
	}
	for range 3 {
		e.do(t, http.MethodGet, "/api?key=k", http.StatusOK)
	}
	e.do(t, http.MethodGet, "/api?key=k&status=500", http.StatusInternalServerError)
	// A read that waits for a version: counted, not timed.
	e.do(t, http.MethodGet, "/api?key=k&min_version=7", http.StatusOK)
	e.do(t, http.MethodPut, "/api", http.StatusAccepted)
	e.do(t, http.MethodPut, "/api", http.StatusAccepted)
	e.do(t, http.MethodDelete, "/api?key=k", http.StatusAccepted)
	e.do(t, "FROB", "/api", http.StatusMethodNotAllowed)
	e.do(t, http.MethodGet, "/api/all", http.StatusOK)
	e.do(t, http.MethodGet, "/healthz", http.StatusOK)
	e.do(t, http.MethodGet, "/readyz", http.StatusOK)
	e.do(t, http.MethodGet, "/no/such/route", http.StatusNotFound)
	e.do(t, http.MethodGet, "/stub_status", http.StatusNotFound)

	t.Run("nginx-exporter", func(t *testing.T) {
		listen := freeAddr(t)
		cmd := exec.Command("prometheus-nginx-exporter",
			"-nginx.scrape-uri", "http://"+e.status+"/stub_status", "-web.listen-address", listen)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer stop(cmd)
		var text string
		waitFor(t, "prometheus-nginx-exporter on "+listen, func() error {
			resp, err := http.Get("http://" + listen + "/metrics")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			text = string(body)
			return err
		})
		fams := families(t, text)
		if got := value(fams, "nginx_up", nil); got != 1 {
			t.Errorf("nginx_up = %v, want 1 (exporter log: %s)", got, out.String())
		}
		// Every request so far, the exporter's own scrape of stub_status too.
		if got, want := value(fams, "nginx_http_requests_total", nil), float64(gets+13); got < want {
			t.Errorf("nginx_http_requests_total = %v, want at least %v", got, want)
		}
	})

	// nginx logs a request once it has answered it: under load the last
	// lines may come after the client has its answer.
	logged := gets + 14
	waitFor(t, fmt.Sprintf("%d lines in nginx's access log", logged), func() error {
		b, err := os.ReadFile(e.accessLog)
		if n := bytes.Count(b, []byte("\n")); err == nil && n < logged {
			return fmt.Errorf("%d lines", n)
		}
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mtail", "--one_shot", "--one_shot_format", "prometheus",
		"--emit_prog_label=false", "--logtostderr", "--progs", "mtail", "--logs", e.accessLog).Output()
	if err != nil {
		log, _ := os.ReadFile(e.accessLog)
		t.Fatalf("mtail --one_shot: %v\naccess log:\n%s", err, log)
	}
	fams := families(t, string(out))

	type series = map[string]string
	req := func(route, method, code string) series {
		return series{"route": route, "method": method, "status_class": code[:1] + "xx", "code": code}
	}
	for _, c := range []struct {
		name   string
		labels series
		want   float64
	}{
		{"kvstack_edge_http_requests_total", req("/api", "GET", "200"), float64(gets + 4)},
		{"kvstack_edge_http_requests_total", req("/api", "GET", "500"), 1},
		{"kvstack_edge_http_requests_total", req("/api", "PUT", "202"), 2},
		{"kvstack_edge_http_requests_total", req("/api", "DELETE", "202"), 1},
		{"kvstack_edge_http_requests_total", req("/api", "other", "405"), 1},
		{"kvstack_edge_http_requests_total", req("/api/all", "GET", "200"), 1},
		{"kvstack_edge_http_requests_total", req("/healthz", "GET", "200"), 1},
		{"kvstack_edge_http_requests_total", req("/readyz", "GET", "200"), 1},
		{"kvstack_edge_http_requests_total", req("other", "GET", "404"), 2},
		{"kvstack_edge_http_request_duration_seconds", series{"route": "/api", "method": "GET"}, float64(gets + 4)},
		{"kvstack_edge_http_request_duration_seconds", series{"route": "/api", "method": "PUT"}, 2},
		{"kvstack_edge_http_request_duration_seconds", series{"route": "other", "method": "GET"}, 2},
		// Each read the broken replica dropped was tried again on the other.
		{"kvstack_edge_upstream_retries_total", series{"route": "/api", "method": "GET"}, float64(retries)},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	var total float64
	for _, m := range fams["kvstack_edge_http_requests_total"].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	if want := float64(logged); total != want {
		log, _ := os.ReadFile(e.accessLog)
		t.Errorf("kvstack_edge_http_requests_total adds up to %v, want %v (one per request)\n%s\naccess log:\n%s", total, want, out, log)
	}
	// Every observation is in a bucket: the +Inf one holds the count (the
	// stand-in replicas answer within nginx's millisecond, request_time 0,
	// which mtail's first bucket, (0, 0.001], would leave out).
	for _, m := range fams["kvstack_edge_http_request_duration_seconds"].GetMetric() {
		h := m.GetHistogram()
		var inf uint64
		for _, bk := range h.GetBucket() {
			if math.IsInf(bk.GetUpperBound(), +1) {
				inf = bk.GetCumulativeCount()
			}
		}
		if inf != h.GetSampleCount() {
			t.Errorf("%v: +Inf bucket %d, count %d: observations in no bucket", m.GetLabel(), inf, h.GetSampleCount())
		}
	}
	// The SLO's threshold is a bucket: a bound, not an interpolation.
	h := fams["kvstack_edge_http_request_duration_seconds"].GetMetric()[0].GetHistogram()
	found := false
	for _, bk := range h.GetBucket() {
		found = found || bk.GetUpperBound() == 0.25
	}
	if !found {
		t.Errorf("no 0.25 s bucket in kvstack_edge_http_request_duration_seconds (the read-latency SLO's threshold)")
	}
}
