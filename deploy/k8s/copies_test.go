package k8s

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the copies of the repository's files under chart/files/ from their sources")

// copies are the files of chart/files/ made from the repository's own (a
// chart holds all it reads: Helm packages the chart's directory alone);
// each is made by a function of the source files.
func copies(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{
		"chart/files/jaeger.yaml":                   readRepo(t, "observability/jaeger.yaml"),
		"chart/files/postgres-exporter-queries.yml": readRepo(t, "observability/postgres-exporter/queries.yml"),
		"chart/files/prometheus-rules.yaml":         prometheusRules(t),
		"chart/files/postgres-instance-queries.yml": instanceQueriesFile(t),
		"chart/files/policy.yaml":                   readRepo(t, "deploy/auth/policy.yaml"),
	}
	for _, f := range globRepo(t, "grafana/dashboards/*.json") {
		out["chart/files/"+filepath.Base(f)] = readRepo(t, f)
	}
	return out
}

func globRepo(t testing.TB, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no file (%v)", pattern, err)
	}
	var rel []string
	for _, f := range files {
		r, _ := filepath.Rel(root, f)
		rel = append(rel, r)
	}
	slices.Sort(rel)
	return rel
}

const ruleHeader = `# Generated from observability/rules/*.yml, their groups in file order: do
# not edit; change the rules there, then
#   cd deploy/k8s && go test -run TestCopies -update
# templates/monitoring.yaml labels every alert with the release's namespace.
`

// withNamespace adds namespace ns to the labels of every alerting rule, as
// the chart does.
func withNamespace(groups []monitoringv1.RuleGroup, ns string) []monitoringv1.RuleGroup {
	for i := range groups {
		for j := range groups[i].Rules {
			r := &groups[i].Rules[j]
			if r.Alert == "" {
				continue
			}
			if r.Labels == nil {
				r.Labels = map[string]string{}
			}
			r.Labels["namespace"] = ns
		}
	}
	return groups
}

// prometheusRules puts the groups of every rule file, comments and all, in
// one file.
func prometheusRules(t testing.TB) []byte {
	t.Helper()
	doc := kyaml.MustParse("groups: []\n")
	groups, err := doc.Pipe(kyaml.Lookup("groups"))
	if err != nil {
		t.Fatal(err)
	}
	groups.YNode().Style = 0
	for _, f := range globRepo(t, "observability/rules/*.yml") {
		n, err := kyaml.Parse(string(readRepo(t, f)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		g, err := n.Pipe(kyaml.Lookup("groups"))
		if err != nil || g == nil {
			t.Fatalf("%s: no groups (%v)", f, err)
		}
		groups.YNode().Content = append(groups.YNode().Content, g.YNode().Content...)
	}
	s, err := doc.String()
	if err != nil {
		t.Fatal(err)
	}
	return []byte(ruleHeader + s)
}

const instanceQueriesHeader = `# Generated from observability/postgres-exporter/queries.yml (cnpgQueries):
# the queries CloudNativePG's exporter runs on every instance, each
# series named cnpg_<query>_<column> (monitoring.yaml renames them). Do not
# edit; change the queries there, then
#   cd deploy/k8s && go test -run TestCopies -update
`

func instanceQueriesFile(t testing.TB) []byte {
	t.Helper()
	out, err := yaml.Marshal(cnpgQueries(t))
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(instanceQueriesHeader), out...)
}

// The copies under base/ equal what their sources make today.
func TestCopies(t *testing.T) {
	for rel, want := range copies(t) {
		if *update {
			if err := os.WriteFile(rel, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(rel)
		if err != nil {
			t.Errorf("%v (make it: go test -run TestCopies -update)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what its source makes: run `cd deploy/k8s && go test -run TestCopies -update`", rel)
		}
	}
}
