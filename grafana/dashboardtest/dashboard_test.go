package dashboardtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"gopkg.in/yaml.v3"
)

const (
	dashboards  = "../dashboards"
	datasources = "../provisioning/datasources"
)

func TestMain(m *testing.M) {
	// The panel and query plugins the SDK knows: without them, options and
	// targets would decode into untyped bags that accept anything.
	plugins.RegisterDefaultPlugins()
	os.Exit(m.Run())
}

// provisioned maps each provisioned datasource's uid to its type.
func provisioned(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(datasources, "*.yml"))
	if len(files) == 0 {
		t.Fatalf("no datasource files in %s", datasources)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Datasources []struct {
				UID  string `yaml:"uid"`
				Type string `yaml:"type"`
			} `yaml:"datasources"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, ds := range doc.Datasources {
			out[ds.UID] = ds.Type
		}
	}
	return out
}

// check decodes one dashboard strictly and returns every problem found.
//
// The SDK's strict decoder of a whole dashboard reports every problem of
// every part, but (v0.0.22) keeps no panel, target or variable: each
// nested decoder returns an empty error list as a non-nil error, which
// its caller takes for a failure. So each part is decoded again on its
// own from the raw JSON, where it is inspected: panels (their fieldConfig
// too, which the SDK decodes loosely but for `custom`), their Prometheus
// queries, and the template variables.
func check(raw []byte, datasources map[string]string) []error {
	//lint:ignore SA1019 Grafana 11 (compose's 11.6) reads schema v1 dashboards; dashboardv2 is Grafana 12's.
	var d dashboard.Dashboard
	if err := real(d.UnmarshalJSONStrict(raw)); err != nil {
		return []error{err}
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	ref := func(where string, ds *common.DataSourceRef) {
		switch {
		case ds == nil || ds.Uid == nil || ds.Type == nil:
			fail("%s: datasource %s: want one named by uid and type", where, show(ds))
		case datasources[*ds.Uid] != *ds.Type:
			fail("%s: datasource %s is not one grafana/provisioning provisions (%v)", where, show(ds), keys(datasources))
		}
	}
	var parts struct {
		Templating struct {
			List []json.RawMessage `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return []error{err}
	}
	for _, r := range parts.Templating.List {
		var v dashboard.VariableModel
		if err := real(v.UnmarshalJSONStrict(r)); err != nil {
			fail("variable: %w", err)
			continue
		}
		if v.Type == dashboard.VariableTypeQuery {
			ref("variable "+v.Name, v.Datasource)
		}
	}
	errs = append(errs, overlaps(raw)...)
	panels, err := panelsOf(raw)
	if err != nil {
		return append(errs, err)
	}
	for _, r := range panels {
		var p dashboard.Panel
		if err := real(p.UnmarshalJSONStrict(r)); err != nil {
			fail("panel: %w", err)
			continue
		}
		where := fmt.Sprintf("panel %d %q", deref(p.Id), deref(p.Title))
		if cfg, ok := cog.ConfigForPanelcfgVariant(p.Type); !ok || cfg.StrictOptionsUnmarshaler == nil {
			fail("%s: panel type %q: the SDK has no plugin for it", where, p.Type)
		}
		ref(where, p.Datasource)
		var body struct {
			FieldConfig json.RawMessage   `json:"fieldConfig"`
			Targets     []json.RawMessage `json:"targets"`
		}
		if err := json.Unmarshal(r, &body); err != nil {
			fail("%s: %w", where, err)
			continue
		}
		if body.FieldConfig != nil {
			var fc dashboard.FieldConfigSource
			if err := real(fc.UnmarshalJSONStrict(body.FieldConfig)); err != nil {
				fail("%s: fieldConfig: %w", where, err)
			}
		}
		if len(body.Targets) == 0 {
			fail("%s: no query", where)
		}
		for j, t := range body.Targets {
			var q prometheus.Dataquery
			if err := real(q.UnmarshalJSONStrict(t)); err != nil {
				fail("%s: target %d: %w", where, j, err)
				continue
			}
			if strings.TrimSpace(q.Expr) == "" {
				fail("%s: target %s has no expr", where, deref(q.RefId))
			}
			ref(fmt.Sprintf("%s target %s", where, deref(q.RefId)), q.Datasource)
		}
	}
	return errs
}

// overlaps reports panels of the dashboard's grid drawn over one another
// (Grafana draws them so; a row merged in at a position already taken is
// the usual cause).
func overlaps(raw []byte) []error {
	var d struct {
		Panels []struct {
			Title   string                   `json:"title"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return []error{err}
	}
	var errs []error
	for i, a := range d.Panels {
		for _, b := range d.Panels[i+1:] {
			p, q := a.GridPos, b.GridPos
			if p.X < q.X+q.W && q.X < p.X+p.W && p.Y < q.Y+q.H && q.Y < p.Y+p.H {
				errs = append(errs, fmt.Errorf("panels %q %+v and %q %+v overlap", a.Title, p, b.Title, q))
			}
		}
	}
	return errs
}

// panelsOf lists a dashboard's panels, those of its rows included; rows
// are decoded strictly here, as the SDK decodes them.
func panelsOf(raw []byte) ([]json.RawMessage, error) {
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	var out []json.RawMessage
	for _, r := range d.Panels {
		var head struct {
			Type   string            `json:"type"`
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(r, &head); err != nil {
			return nil, err
		}
		if head.Type != "row" {
			out = append(out, r)
			continue
		}
		var row dashboard.RowPanel
		if err := real(row.UnmarshalJSONStrict(r)); err != nil {
			return nil, err
		}
		out = append(out, head.Panels...)
	}
	return out, nil
}

// real drops the empty error list the SDK's decoders return on success (a
// nil cog.BuildErrors in a non-nil error).
func real(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func show(ds *common.DataSourceRef) string {
	if ds == nil {
		return "none"
	}
	return fmt.Sprintf("{type %q, uid %q}", deref(ds.Type), deref(ds.Uid))
}

func keys(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, v+":"+k)
	}
	sort.Strings(out)
	return out
}

func dashboardFiles(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dashboards, "*.json"))
	if len(files) == 0 {
		t.Fatalf("no dashboards in %s", dashboards)
	}
	return files
}

// Every dashboard decodes strictly with the SDK's types and plugins, and
// names only provisioned datasources.
func TestDashboardsAreWhatGrafanaReads(t *testing.T) {
	ds := provisioned(t)
	for _, f := range dashboardFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, err := range check(raw, ds) {
				t.Error(err)
			}
		})
	}
}

// The check is strict: each kind of mistake, made in a copy of the real
// dashboard, is caught.
func TestCheckCatchesMistakes(t *testing.T) {
	ds := provisioned(t)
	raw, err := os.ReadFile(dashboardFiles(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	// firstOf finds the first panel of a type (rows excluded).
	firstOf := func(d map[string]any, typ string) map[string]any {
		for _, p := range d["panels"].([]any) {
			if pm := p.(map[string]any); pm["type"] == typ {
				return pm
			}
		}
		t.Fatalf("no %s panel to break", typ)
		return nil
	}
	for _, c := range []struct {
		name   string
		break_ func(d map[string]any)
	}{
		{"unknown dashboard field", func(d map[string]any) { d["refreshEvery"] = "5s" }},
		{"wrong type", func(d map[string]any) { firstOf(d, "timeseries")["gridPos"].(map[string]any)["h"] = "8" }},
		{"unknown panel field", func(d map[string]any) { firstOf(d, "timeseries")["colour"] = "red" }},
		{"unknown panel type", func(d map[string]any) { firstOf(d, "timeseries")["type"] = "kvstack-sparkline" }},
		{"unknown option", func(d map[string]any) { firstOf(d, "stat")["options"].(map[string]any)["sparkline"] = true }},
		{"option of the wrong type", func(d map[string]any) {
			firstOf(d, "timeseries")["options"].(map[string]any)["legend"].(map[string]any)["showLegend"] = "yes"
		}},
		{"unknown field config", func(d map[string]any) {
			firstOf(d, "timeseries")["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["unitt"] = "s"
		}},
		{"unknown custom field config", func(d map[string]any) {
			firstOf(d, "timeseries")["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["custom"].(map[string]any)["lineWidht"] = 2
		}},
		{"unknown query field", func(d map[string]any) {
			firstOf(d, "timeseries")["targets"].([]any)[0].(map[string]any)["expression"] = "up"
		}},
		{"datasource not provisioned", func(d map[string]any) {
			firstOf(d, "timeseries")["datasource"].(map[string]any)["uid"] = "mimir"
		}},
		{"panels drawn over one another", func(d map[string]any) {
			firstOf(d, "timeseries")["gridPos"].(map[string]any)["y"] = firstOf(d, "stat")["gridPos"].(map[string]any)["y"]
		}},
		{"query on a datasource not provisioned", func(d map[string]any) {
			firstOf(d, "stat")["targets"].([]any)[0].(map[string]any)["datasource"].(map[string]any)["uid"] = "mimir"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			c.break_(d)
			broken, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if errs := check(broken, ds); len(errs) == 0 {
				t.Errorf("a dashboard with %s passes the check", c.name)
			} else {
				t.Logf("caught: %v", errors.Join(errs...))
			}
		})
	}
}

// The "Firing alerts" stat counts kvstack's alerts by name: its matcher
// must take every alert observability/rules/ defines, or a new rule would
// fire unseen on the dashboard.
func TestFiringAlertsCountsEveryRule(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(dashboards, "kvstack-overview.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`count\(ALERTS\{alertstate=\\"firing\\",alertname=~\\"([^"\\]+)\\"\}\)`).FindSubmatch(raw)
	if m == nil {
		t.Fatal(`no count(ALERTS{alertstate="firing",alertname=~"…"}) panel in kvstack-overview.json`)
	}
	names := regexp.MustCompile("^(?:" + string(m[1]) + ")$")
	rules, _ := filepath.Glob("../../observability/rules/*.yml")
	if len(rules) == 0 {
		t.Fatal("no rule files in observability/rules")
	}
	for _, f := range rules {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)`).FindAllSubmatch(text, -1) {
			if !names.Match(a[1]) {
				t.Errorf("alert %s (%s) is not counted by the Firing alerts panel (alertname=~%q)", a[1], filepath.Base(f), m[1])
			}
		}
	}
}
