package k8s

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/cli/values"
	"helm.sh/helm/v4/pkg/getter"
	release "helm.sh/helm/v4/pkg/release/v1"
)

// MinKubeVersion is the oldest Kubernetes the chart is made and checked
// for: its Chart.yaml's kubeVersion, and the release whose OpenAPI schema
// the tests validate every built-in object against.
const MinKubeVersion = "v1.33.0"

// Dir is this package's directory: the chart is chart/, the values files
// values/.
var Dir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}()

// Release is a rendered release: its manifests and its hooks, each a
// YAML document, as `helm template` prints them.
type Release struct {
	Manifests []string
	Hooks     []Hook
}

// Hook is one hook object with the events Helm runs it on.
type Hook struct {
	Events   []string
	Manifest string
}

// Render renders the chart, as `helm template kvstack chart -n namespace
// -f values/<name>.yaml…` does, with the Helm v4 SDK, for MinKubeVersion.
func Render(ctx context.Context, namespace string, valuesFiles ...string) (*Release, error) {
	chrt, err := loader.Load(filepath.Join(Dir, "chart"))
	if err != nil {
		return nil, err
	}
	vals, err := (&values.Options{ValueFiles: valuesFiles}).MergeValues(getter.Providers{})
	if err != nil {
		return nil, err
	}
	kube, err := common.ParseKubeVersion(MinKubeVersion)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.Replace = true
	install.ReleaseName = "kvstack"
	install.Namespace = namespace
	install.KubeVersion = kube
	rel, err := install.RunWithContext(ctx, chrt, vals)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("render: a release of type %T", rel)
	}
	out := &Release{}
	for _, doc := range strings.Split(r.Manifest, "\n---") {
		if strings.TrimSpace(stripComments(doc)) != "" {
			out.Manifests = append(out.Manifests, strings.TrimPrefix(doc, "\n"))
		}
	}
	for _, h := range r.Hooks {
		var events []string
		for _, e := range h.Events {
			events = append(events, string(e))
		}
		sort.Strings(events)
		out.Hooks = append(out.Hooks, Hook{Events: events, Manifest: h.Manifest})
	}
	return out, nil
}

// ValuesFile is the path of one of values/<name>.yaml.
func ValuesFile(name string) string {
	return filepath.Join(Dir, "values", name+".yaml")
}

// YAML is the release as one stream for `kubectl apply -f -`: the hooks
// first (kubectl has no hooks; a Job there runs as soon as it is
// applied), then the manifests.
func (r *Release) YAML() string {
	var docs []string
	for _, h := range r.Hooks {
		docs = append(docs, h.Manifest)
	}
	docs = append(docs, r.Manifests...)
	return strings.Join(docs, "\n---\n") + "\n"
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
