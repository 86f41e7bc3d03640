package observability

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/lab/nginxtest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

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
	nginxtest.RequireCommands(t, "nginx", "mtail", "prometheus-nginx-exporter")
	a, b := nginxtest.StartReplica(t), nginxtest.StartReplica(t)
	e := nginxtest.StartEdge(t, a.Addr, b.Addr, nil)
	do := func(method, path string, want int) {
		t.Helper()
		if a := e.Do(t, method, path); a.Status != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, a.Status, a.Body, want)
		}
	}

	// One replica drops connections: reads go on to the other (200), each
	// try on the broken one a retry.
	a.Broken.Store(true)
	gets := 0
	for a.Hits.Load() == 0 && gets < 10 {
		do(http.MethodGet, "/api?key=k", http.StatusOK)
		gets++
	}
	a.Broken.Store(false)
	retries := a.Hits.Load()
	if retries == 0 {
		t.Fatal("nginx never sent a read to the broken replica")
	}
	for range 3 {
		do(http.MethodGet, "/api?key=k", http.StatusOK)
	}
	do(http.MethodGet, "/api?key=k&status=500", http.StatusInternalServerError)
	// A read that waits for a version: counted, not timed.
	do(http.MethodGet, "/api?key=k&min_version=7", http.StatusOK)
	do(http.MethodPut, "/api", http.StatusAccepted)
	do(http.MethodPut, "/api", http.StatusAccepted)
	do(http.MethodDelete, "/api?key=k", http.StatusAccepted)
	do("FROB", "/api", http.StatusMethodNotAllowed)
	do(http.MethodGet, "/api/all", http.StatusOK)
	do(http.MethodGet, "/healthz", http.StatusOK)
	do(http.MethodGet, "/readyz", http.StatusOK)
	do(http.MethodGet, "/no/such/route", http.StatusNotFound)
	do(http.MethodGet, "/stub_status", http.StatusNotFound)

	t.Run("nginx-exporter", func(t *testing.T) {
		listen := nginxtest.FreeAddr(t)
		cmd := exec.Command("prometheus-nginx-exporter",
			"-nginx.scrape-uri", "http://"+e.Status+"/stub_status", "-web.listen-address", listen)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer nginxtest.Stop(cmd)
		var text string
		nginxtest.WaitFor(t, "prometheus-nginx-exporter on "+listen, func() error {
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
	nginxtest.WaitFor(t, fmt.Sprintf("%d lines in nginx's access log", logged), func() error {
		b, err := os.ReadFile(e.AccessLog)
		if n := bytes.Count(b, []byte("\n")); err == nil && n < logged {
			return fmt.Errorf("%d lines", n)
		}
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// One-shot mode still listens: on a port of its own, not mtail's 3903,
	// which a running stack's mtail holds.
	out, err := exec.CommandContext(ctx, "mtail", "--one_shot", "--one_shot_format", "prometheus",
		"--address", "127.0.0.1", "--port", "0",
		"--emit_prog_label=false", "--logtostderr", "--progs", "../../observability/mtail", "--logs", e.AccessLog).Output()
	if err != nil {
		log, _ := os.ReadFile(e.AccessLog)
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
		log, _ := os.ReadFile(e.AccessLog)
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
