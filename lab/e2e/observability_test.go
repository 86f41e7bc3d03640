//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/rabbitmq"
)

// Prometheus scrapes every part of the stack it is configured for, and
// each answers.
func TestPrometheusScrapesTheStack(t *testing.T) {
	h := newHarness(t)
	prom := "http://" + h.addr("KV_PROMETHEUS_PORT")
	h.mustAnswer(t, "Prometheus", prom+"/-/ready")
	want := []string{"alertmanager", "jaeger-spanmetrics", "kv-api", "kv-consumer", "mtail", "nginx-exporter",
		"postgres-exporter", "prometheus", "rabbitmq", "rabbitmq-node", "redis-exporter"}
	if h.s.Backups() { // a stack with engines of its own backs its PostgreSQL up
		want = append(want, "backups")
		sort.Strings(want)
	}
	eventually(t, 20*time.Second, func() string {
		r, err := h.try(http.MethodGet, prom+"/api/v1/targets?state=active", nil)
		if err != nil || r.status != http.StatusOK {
			return fmt.Sprintf("Prometheus targets: %v %d", err, r.status)
		}
		var body struct {
			Data struct {
				ActiveTargets []struct {
					ScrapePool string `json:"scrapePool"`
					ScrapeURL  string `json:"scrapeUrl"`
					Health     string `json:"health"`
					LastError  string `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			return err.Error()
		}
		pools, apis := map[string]bool{}, 0
		var down []string
		for _, tg := range body.Data.ActiveTargets {
			pools[tg.ScrapePool] = true
			if tg.ScrapePool == "kv-api" {
				apis++
			}
			if tg.Health != "up" {
				down = append(down, fmt.Sprintf("%s %s: %s %s", tg.ScrapePool, tg.ScrapeURL, tg.Health, tg.LastError))
			}
		}
		var got []string
		for p := range pools {
			got = append(got, p)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") || apis != 2 {
			return fmt.Sprintf("scrape pools %v (%d kv-api targets), want %v (2)", got, apis, want)
		}
		if len(down) > 0 {
			return "targets not up: " + strings.Join(down, "; ")
		}
		return ""
	})
}

// ---------------------------------------------------------------- Prometheus

// prometheus is the stack's Prometheus HTTP API.
type prometheus struct {
	h    *harness
	base string
}

func newPrometheus(t *testing.T, h *harness) prometheus {
	t.Helper()
	p := prometheus{h: h, base: "http://" + h.addr("KV_PROMETHEUS_PORT")}
	h.mustAnswer(t, "Prometheus", p.base+"/-/ready")
	return p
}

// get decodes the data of a successful API answer into out.
func (p prometheus) get(path string, params url.Values, out any) error {
	r, err := p.h.try(http.MethodGet, p.base+path+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		return fmt.Errorf("%s: status %d, body %.300s", path, r.status, r.body)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s (HTTP %d)", path, body.Error, r.status)
	}
	return json.Unmarshal(body.Data, out)
}

// promSample is one element of an instant vector.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query evaluates expr now. A scalar or string result counts as one sample.
func (p prometheus) query(expr string) ([]promSample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return []promSample{{}}, nil
	}
	var v []promSample
	return v, json.Unmarshal(data.Result, &v)
}

// promRule is a rule as Prometheus loaded it.
type promRule struct {
	Name      string            `json:"name"`
	Query     string            `json:"query"`
	Type      string            `json:"type"` // "recording" or "alerting"
	Duration  float64           `json:"duration"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
	Labels    map[string]string `json:"labels"`
}

func (p prometheus) rules() ([]promRule, error) {
	var data struct {
		Groups []struct {
			File  string     `json:"file"`
			Rules []promRule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules", nil, &data); err != nil {
		return nil, err
	}
	var out []promRule
	for _, g := range data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// driveTraffic sends every kind of request through nginx, so that each
// route, cache result, publish and consumer outcome has recent samples.
func driveTraffic(t *testing.T, h *harness) {
	t.Helper()
	prefix := uniq("e2e-obs")
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("%s-%d", prefix, i)
		if r := h.put(t, key, "v"); r.status != http.StatusAccepted {
			t.Fatalf("PUT %s: %d %s", key, r.status, r.body)
		}
	}
	// Reads once applied: misses fill the cache, then hits.
	last := fmt.Sprintf("%s-%d", prefix, 19)
	eventually(t, 20*time.Second, func() string {
		if r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(last), nil); r.status != http.StatusOK {
			return fmt.Sprintf("GET %s: %d (the consumer has not applied it yet?)", last, r.status)
		}
		return ""
	})
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("%s-%d", prefix, i)
		h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil)
		h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key+"-absent"), nil)
	}
	for i := 0; i < 5; i++ {
		key := fmt.Sprintf("%s-%d", prefix, i)
		if r := h.do(t, http.MethodDelete, "/api?key="+url.QueryEscape(key), nil); r.status != http.StatusAccepted {
			t.Fatalf("DELETE %s: %d %s", key, r.status, r.body)
		}
	}
	h.do(t, http.MethodGet, "/api/all?limit=10", nil)
	h.do(t, http.MethodGet, "/api?key=", nil) // 400
	// A write that waits to be applied, and a read with its token: the
	// read-your-writes panels.
	w := h.do(t, http.MethodPut, "/api?wait=applied", []byte(fmt.Sprintf(`{"key":%q,"value":"w"}`, prefix+"-waited")))
	if w.status != http.StatusOK {
		t.Fatalf("PUT wait=applied: %d %s", w.status, w.body)
	}
	h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(prefix+"-waited")+"&min_version="+w.header.Get("KV-Version"), nil)
}

// ---------------------------------------------------------------- dashboards

// dashboardFile is one Grafana dashboard JSON under grafana/.
type dashboardFile struct {
	path string
	dash map[string]any
}

func loadDashboards(t *testing.T, root string) []dashboardFile {
	t.Helper()
	var out []dashboardFile
	err := filepath.WalkDir(filepath.Join(root, "grafana"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var dash map[string]any
		if err := json.Unmarshal(b, &dash); err != nil {
			return fmt.Errorf("%s: not JSON: %w", path, err)
		}
		rel, _ := filepath.Rel(root, path)
		out = append(out, dashboardFile{path: rel, dash: dash})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no dashboard JSON under grafana/")
	}
	return out
}

// panelTarget is one query of one panel.
type panelTarget struct {
	panel, refID, expr string
	datasource         map[string]any
}

// targets lists every panel's targets, rows' nested panels included.
func (d dashboardFile) targets() []panelTarget {
	var out []panelTarget
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, p := range panels {
			pm, _ := p.(map[string]any)
			title, _ := pm["title"].(string)
			pds, _ := pm["datasource"].(map[string]any)
			for _, tg := range asSlice(pm["targets"]) {
				tm, _ := tg.(map[string]any)
				expr, _ := tm["expr"].(string)
				ref, _ := tm["refId"].(string)
				ds, _ := tm["datasource"].(map[string]any)
				if ds == nil {
					ds = pds
				}
				out = append(out, panelTarget{panel: title, refID: ref, expr: expr, datasource: ds})
			}
			walk(asSlice(pm["panels"]))
		}
	}
	walk(asSlice(d.dash["panels"]))
	return out
}

// variables lists the dashboard's template variables.
func (d dashboardFile) variables() []map[string]any {
	tmpl, _ := d.dash["templating"].(map[string]any)
	var out []map[string]any
	for _, v := range asSlice(tmpl["list"]) {
		if vm, ok := v.(map[string]any); ok {
			out = append(out, vm)
		}
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// provisionedDatasources are the datasource uids Grafana is provisioned with.
func provisionedDatasources(t *testing.T, root string) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "grafana/provisioning/datasources/*.yml"))
	uids := map[string]bool{}
	re := regexp.MustCompile(`(?m)^\s+uid:\s*"?([\w-]+)"?\s*$`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			uids[m[1]] = true
		}
	}
	return uids
}

// Every dashboard is one a Grafana can provision: a stable uid, a recent
// schema, unique panel ids, Prometheus queries on a provisioned datasource
// by uid, and no template variable that is not defined.
func TestDashboardsAreWellFormed(t *testing.T) {
	env := loadStackEnv(t)
	uids := provisionedDatasources(t, env.root)
	if !uids["prometheus"] || !uids["jaeger"] {
		t.Fatalf("provisioned datasource uids %v: want prometheus and jaeger", uids)
	}
	seenUID := map[string]string{}
	for _, d := range loadDashboards(t, env.root) {
		t.Run(d.path, func(t *testing.T) {
			uid, _ := d.dash["uid"].(string)
			if !regexp.MustCompile(`^[a-z0-9-]{3,40}$`).MatchString(uid) {
				t.Errorf("uid %q: want a stable, readable uid", uid)
			}
			if other, ok := seenUID[uid]; ok {
				t.Errorf("uid %q also used by %s", uid, other)
			}
			seenUID[uid] = d.path
			if v, _ := d.dash["schemaVersion"].(float64); v < 36 {
				t.Errorf("schemaVersion %v: want 36 or later (datasource refs by uid)", v)
			}
			defined := map[string]bool{}
			for _, v := range d.variables() {
				name, _ := v["name"].(string)
				defined[name] = true
				if ds, _ := v["datasource"].(map[string]any); ds != nil && !uids[fmt.Sprint(ds["uid"])] {
					t.Errorf("variable %s: datasource %v is not provisioned", name, ds)
				}
			}
			ids := map[float64]bool{}
			var walk func([]any)
			walk = func(panels []any) {
				for _, p := range panels {
					pm, _ := p.(map[string]any)
					id, _ := pm["id"].(float64)
					if ids[id] {
						t.Errorf("panel id %v used twice", id)
					}
					ids[id] = true
					walk(asSlice(pm["panels"]))
				}
			}
			walk(asSlice(d.dash["panels"]))
			targets := d.targets()
			if len(targets) == 0 {
				t.Fatal("no panel targets")
			}
			varRef := regexp.MustCompile(`\$\{?(\w+)`)
			for _, tg := range targets {
				if tg.datasource == nil || tg.datasource["type"] != "prometheus" || !uids[fmt.Sprint(tg.datasource["uid"])] {
					t.Errorf("panel %q %s: datasource %v, want a provisioned Prometheus by uid", tg.panel, tg.refID, tg.datasource)
				}
				if strings.TrimSpace(tg.expr) == "" {
					t.Errorf("panel %q %s: empty expr", tg.panel, tg.refID)
				}
				for _, m := range varRef.FindAllStringSubmatch(tg.expr, -1) {
					if !defined[m[1]] && !strings.HasPrefix(m[1], "__") {
						t.Errorf("panel %q %s: $%s is not a template variable", tg.panel, tg.refID, m[1])
					}
				}
			}
		})
	}
}

// Grafana's built-in variables, as the default dashboard range would set
// them.
var grafanaBuiltins = strings.NewReplacer(
	"${__rate_interval}", "1m", "$__rate_interval", "1m",
	"${__interval}", "15s", "$__interval", "15s",
	"${__range}", "1h", "$__range", "1h",
	"${__range_s}", "3600", "$__range_s", "3600",
)

// labelValues runs a variable's label_values(selector, label) query and
// returns its values.
func labelValues(p prometheus, query string) ([]string, error) {
	m := regexp.MustCompile(`^label_values\((.*),\s*(\w+)\s*\)$`).FindStringSubmatch(strings.TrimSpace(query))
	if m == nil {
		return nil, fmt.Errorf("variable query %q: only label_values(selector, label) is handled", query)
	}
	res, err := p.query(fmt.Sprintf("group by (%s) (%s)", m[2], m[1]))
	if err != nil {
		return nil, err
	}
	var vals []string
	for _, s := range res {
		if v := s.Metric[m[2]]; v != "" {
			vals = append(vals, v)
		}
	}
	sort.Strings(vals)
	return vals, nil
}

// Every panel query of every dashboard returns data from the real
// Prometheus scraping the running stack, with the template variables set
// to "All" of their real values, as Grafana opens the dashboard.
func TestDashboardQueriesReturnData(t *testing.T) {
	h := newHarness(t)
	p := newPrometheus(t, h)
	driveTraffic(t, h)
	for _, d := range loadDashboards(t, h.root) {
		t.Run(d.path, func(t *testing.T) {
			// A variable's values, as Grafana's multi-value regex: (a|b|c).
			subst := map[string]string{}
			for _, v := range d.variables() {
				name, _ := v["name"].(string)
				q, _ := v["definition"].(string)
				if qm, ok := v["query"].(map[string]any); ok {
					q, _ = qm["query"].(string)
				}
				var vals []string
				eventually(t, 30*time.Second, func() string {
					var err error
					if vals, err = labelValues(p, q); err != nil {
						return fmt.Sprintf("variable %s: %v", name, err)
					}
					if len(vals) == 0 {
						return fmt.Sprintf("variable %s: %s has no values", name, q)
					}
					return ""
				})
				// Regex-escaped, then escaped again for a PromQL string
				// literal, as Grafana does: 127\\.0\\.0\\.1:8081.
				quoted := make([]string, len(vals))
				for i, s := range vals {
					quoted[i] = strings.ReplaceAll(regexp.QuoteMeta(s), `\`, `\\`)
				}
				subst[name] = "(" + strings.Join(quoted, "|") + ")"
				t.Logf("$%s = %s", name, subst[name])
			}
			names := make([]string, 0, len(subst))
			for n := range subst {
				names = append(names, n)
			}
			// Longest first: $instance_id must not be cut at $instance.
			sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
			// Data is there within seconds of the traffic; once the
			// deadline is past, each remaining query gets one short try,
			// so that a broken Prometheus fails the test quickly.
			deadline := time.Now().Add(45 * time.Second)
			wait := func() time.Duration { return max(time.Until(deadline), 2*time.Second) }
			for _, tg := range d.targets() {
				expr := grafanaBuiltins.Replace(tg.expr)
				for _, n := range names {
					expr = strings.ReplaceAll(expr, "${"+n+"}", subst[n])
					expr = strings.ReplaceAll(expr, "$"+n, subst[n])
				}
				t.Run(tg.panel+"/"+tg.refID, func(t *testing.T) {
					eventually(t, wait(), func() string {
						res, err := p.query(expr)
						if err != nil {
							return fmt.Sprintf("%s\n%v", expr, err)
						}
						if len(res) == 0 {
							return fmt.Sprintf("no data for\n%s", expr)
						}
						return ""
					})
				})
			}
		})
	}
}

// namesIn lists the `- record:` or `- alert:` names of the rule files.
func namesIn(t *testing.T, root, kind string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "observability/rules/*.yml"))
	if len(files) == 0 {
		t.Fatal("no rule files in observability/rules/")
	}
	re := regexp.MustCompile(`(?m)^\s*-\s*` + kind + `:\s*(\S+)\s*$`)
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out
}

// Prometheus runs every rule of observability/rules/ without error, and
// every recording rule records a series.
func TestRecordingRulesRecord(t *testing.T) {
	h := newHarness(t)
	p := newPrometheus(t, h)
	driveTraffic(t, h)
	wantRecords := namesIn(t, h.root, "record")
	wantAlerts := namesIn(t, h.root, "alert")
	var loaded []promRule
	eventually(t, 30*time.Second, func() string {
		var err error
		if loaded, err = p.rules(); err != nil {
			return err.Error()
		}
		var records, alerts, bad []string
		for _, r := range loaded {
			if r.Type == "recording" {
				records = append(records, r.Name)
			} else {
				alerts = append(alerts, r.Name)
			}
			if r.Health != "ok" {
				bad = append(bad, fmt.Sprintf("%s: health %q %s", r.Name, r.Health, r.LastError))
			}
		}
		sort.Strings(records)
		sort.Strings(alerts)
		switch {
		case !slices.Equal(records, wantRecords):
			return fmt.Sprintf("Prometheus records %v, observability/rules has %v (is the stack's config current? `make up`)", records, wantRecords)
		case !slices.Equal(alerts, wantAlerts):
			return fmt.Sprintf("Prometheus alerts %v, observability/rules has %v", alerts, wantAlerts)
		case len(bad) > 0:
			return "rules not evaluated yet or failing: " + strings.Join(bad, "; ")
		}
		return ""
	})
	for _, name := range wantRecords {
		t.Run(name, func(t *testing.T) {
			eventually(t, 30*time.Second, func() string {
				res, err := p.query(name)
				if err != nil {
					return err.Error()
				}
				if len(res) == 0 {
					return "no series recorded for " + name
				}
				return ""
			})
		})
	}
}

// The alerts use series that exist: each metric name in an alert's
// expression has series in Prometheus (a typo would make an alert that
// never fires). A few series exist only in some topologies: each is
// required where the stack has what makes it, and excused elsewhere.
func TestAlertRulesUseRealSeries(t *testing.T) {
	h := newHarness(t)
	p := newPrometheus(t, h)
	queueType := envOr("RABBITMQ_QUEUE_TYPE", rabbitmq.DefaultConfig().QueueType)
	standbys, err := p.query(`sum(pg_replication_standbys{job="postgres-exporter"}) > 0`)
	if err != nil {
		t.Fatal(err)
	}
	excused := map[string]bool{
		// Quorum queues' members report them; classic queues have none.
		"rabbitmq_detailed_raft_term_total": queueType != "quorum",
		// One series per standby streaming from the primary.
		"pg_replication_standby_replay_lag_seconds": len(standbys) == 0,
		// The backup scheduler's (BackupTooOld): only a stack that backs
		// its own PostgreSQL up runs it.
		"kvstack_backup_newest_timestamp_seconds": !h.s.Backups(),
		"kvstack_backup_max_age_seconds":          !h.s.Backups(),
	}
	t.Logf("queue type %s, %d PostgreSQL servers with standbys, backups %t; excused when absent: %v", queueType, len(standbys), h.s.Backups(), excused)
	rules, err := p.rules()
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+|(?:kvstack|rabbitmq|go|process|pg|redis|nginx)_[a-z0-9_]+|up)\b`)
	for _, r := range rules {
		if r.Type != "alerting" {
			continue
		}
		for _, m := range name.FindAllString(r.Query, -1) {
			res, err := p.query(fmt.Sprintf("group({__name__=%q})", m))
			if err != nil {
				t.Errorf("%s: %v", r.Name, err)
			} else if len(res) == 0 && !excused[m] {
				t.Errorf("%s uses %s, which has no series in Prometheus", r.Name, m)
			}
		}
	}
}
