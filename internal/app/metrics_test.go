package app

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kvstack/kvstack/internal/metrics"
)

// scrape fetches a process's /metrics, as OpenMetrics when openMetrics,
// from its admin listener: base is the process's data URL, as boot
// returned it, or an admin URL.
func scrape(t *testing.T, base string, openMetrics bool) string {
	t.Helper()
	body, err := scrapeBody(base, openMetrics)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// scrapeBody is scrape's exposition, or why there is none: for a goroutine
// other than the test's, which may not call t.Fatal.
func scrapeBody(base string, openMetrics bool) (string, error) {
	if a, ok := admins.Load(strings.TrimPrefix(base, "http://")); ok {
		base = "http://" + a.(string)
	}
	req, err := http.NewRequest("GET", base+"/metrics", nil)
	if err != nil {
		return "", err
	}
	if openMetrics {
		req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("scrape %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("scrape %s: %d %v", base, resp.StatusCode, err)
	}
	return string(body), nil
}

// requireSeries fails unless every wanted series (a line prefix, labels
// included) appears with a non-zero value.
func requireSeries(t *testing.T, what, exposition string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !hasSeries(exposition, want) {
			t.Errorf("%s: no non-zero series %s", what, want)
		}
	}
}

// hasSeries says whether the series want (a line prefix, labels included)
// appears in exposition with a non-zero value.
func hasSeries(exposition, want string) bool {
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, want) && !strings.HasSuffix(line, " 0") {
			return true
		}
	}
	return false
}

// promtoolClean runs `promtool check metrics` on an exposition; it must have
// nothing to say.
func promtoolClean(t *testing.T, what, exposition string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (make setup-all installs Prometheus): %v", err)
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics on %s: %v\n%s", what, err, out.String())
	}
}

func TestMetricsAreExportedAndClean(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	consumerAddr, _ := s.startConsumer()

	op := s.put("m", "v")
	s.waitStored(op)
	s.waitCached(op)
	s.do("GET", "/api?key=m", "")                // hit
	s.do("GET", "/api?key=absent", "")           // miss
	s.do("GET", "/api?key=", "")                 // 400
	s.waitStored(s.del("m"))                     // a delete, applied
	s.do("PUT", "/api", `{"key":"x","value":1}`) // 400

	api := scrape(t, s.api, false)
	requireSeries(t, "api", api,
		`kvstack_http_requests_total{method="GET",route="/api",status_class="2xx"}`,
		`kvstack_http_requests_total{method="GET",route="/api",status_class="4xx"}`,
		`kvstack_http_requests_total{method="PUT",route="/api",status_class="2xx"}`,
		`kvstack_http_request_duration_seconds_count{method="PUT",route="/api"}`,
		`kvstack_cache_requests_total{result="hit"}`,
		`kvstack_cache_requests_total{result="miss"}`,
		`kvstack_publish_total{outcome="confirmed",queue="`+s.mq.QueueAdd+`"}`,
		`kvstack_publish_total{outcome="confirmed",queue="`+s.mq.QueueDel+`"}`,
		`kvstack_publish_duration_seconds_count{queue="`+s.mq.QueueAdd+`"}`,
		`kvstack_dependency_duration_seconds_count{dependency="postgres",operation="get"}`,
		`kvstack_dependency_duration_seconds_count{dependency="redis",operation="get"}`,
		`kvstack_pg_pool_acquires_total`,
		`kvstack_redis_pool_connections`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
		`kvstack_capability{capability="read"}`,
		`kvstack_capability{capability="write"}`,
		`kvstack_capability{capability="list"}`,
		`kvstack_ready`,
	)
	promtoolClean(t, "api", api)

	var con string
	eventually(t, 10*time.Second, "the consumer's metrics", func() (bool, string) {
		con = scrape(t, "http://"+consumerAddr, false)
		return strings.Contains(con, `kvstack_consumer_messages_total{outcome="applied",queue="`+s.mq.QueueDel+`"} 1`), con
	})
	requireSeries(t, "consumer", con,
		`kvstack_consumer_messages_total{outcome="applied",queue="`+s.mq.QueueAdd+`"}`,
		`kvstack_consumer_batch_size_count`,
		`kvstack_consumer_apply_duration_seconds_count`,
		`kvstack_consumer_lag_seconds_count{queue="`+s.mq.QueueAdd+`"}`,
		`kvstack_dependency_duration_seconds_count{dependency="postgres",operation="apply_batch"}`,
		`kvstack_dependency_duration_seconds_count{dependency="redis",operation="apply"}`,
		`kvstack_capability{capability="apply"}`,
		`kvstack_ready`,
	)
	promtoolClean(t, "consumer", con)

	// Every outcome counter is exported from the start, at 0 if need be, so
	// that a rate() over it has data before the first failure.
	for what, exposition := range map[string]string{"api": api, "consumer": con} {
		// Either process may purge a shard (redis.PurgeReport): both count.
		for _, mark := range []string{metrics.MarkOtherMaster, metrics.MarkNone} {
			if series := `kvstack_cache_shard_purges_total{mark="` + mark + `"}`; !strings.Contains(exposition, series) {
				t.Errorf("%s: no series %s", what, series)
			}
		}
		present := map[[2]string]bool{}
		for _, m := range metricFamily(t, exposition, "kvstack_dependency_errors_total").GetMetric() {
			var key [2]string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "dependency":
					key[0] = l.GetValue()
				case "operation":
					key[1] = l.GetValue()
				}
			}
			present[key] = true
		}
		for dep, ops := range measuredOps {
			for _, op := range ops {
				if !present[[2]string{dep, op}] {
					t.Errorf("%s: kvstack_dependency_errors_total{dependency=%q,operation=%q} is not exported", what, dep, op)
				}
			}
		}
	}

	// Latency histograms carry the trace id of a sampled request.
	if om := scrape(t, s.api, true); !strings.Contains(om, `# {trace_id="`) {
		t.Errorf("OpenMetrics exposition has no trace-id exemplar")
	}
	if om := scrape(t, "http://"+consumerAddr, true); !strings.Contains(om, `kvstack_consumer_lag_seconds_bucket{queue="`) || !strings.Contains(om, `# {trace_id="`) {
		t.Errorf("consumer's OpenMetrics exposition has no lag exemplar")
	}
	for _, label := range []string{`key="`, `route="/api?`} {
		if strings.Contains(api, label) || strings.Contains(con, label) {
			t.Errorf("a metric label carries client data: %s", label)
		}
	}
}

// consumerOutcomes scrapes a consumer and sums kvstack_consumer_messages_total
// by outcome, over both queues.
func consumerOutcomes(t *testing.T, base string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range metricFamily(t, scrape(t, base, false), "kvstack_consumer_messages_total").GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// metricFamily parses a text exposition and returns the family name, failing
// the test when it is absent.
func metricFamily(t *testing.T, exposition, name string) *dto.MetricFamily {
	t.Helper()
	f, err := parseFamily(exposition, name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// parseFamily is metricFamily, or why there is none: for a goroutine other
// than the test's.
func parseFamily(exposition, name string) (*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		return nil, fmt.Errorf("parse exposition: %w", err)
	}
	f, ok := families[name]
	if !ok {
		return nil, fmt.Errorf("no metric %s in the exposition", name)
	}
	return f, nil
}
