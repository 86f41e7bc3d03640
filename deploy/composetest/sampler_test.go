package composetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kvstack/kvstack/lab/native"
)

// productionSampler is native.ProductionSampler, the sampler the bench
// measures (lab/bench), as variables.
func productionSampler(t *testing.T) map[string]string {
	t.Helper()
	want := map[string]string{}
	for _, kv := range native.ProductionSampler {
		name, value, _ := strings.Cut(kv, "=")
		want[name] = value
	}
	if len(want) != 2 || want["OTEL_TRACES_SAMPLER"] == "" || want["OTEL_TRACES_SAMPLER_ARG"] == "" {
		t.Fatalf("native.ProductionSampler = %q: want OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG", native.ProductionSampler)
	}
	return want
}

// The bench measures the sampler that the compose topologies ship: every
// kvstack binary that exports traces (the API replicas and the consumers)
// samples as native.ProductionSampler says.
func TestComposeShipsTheBenchedSampler(t *testing.T) {
	want := productionSampler(t)
	for _, file := range composeFiles {
		p := mustLoadFile(t, file)
		traced := 0
		for _, s := range p.Services {
			if env(s, "OTEL_EXPORTER_OTLP_ENDPOINT") == "" || env(s, "KV_MESSAGE_KEYS") == "" {
				continue // not the API nor a consumer
			}
			traced++
			for name, value := range want {
				if got := env(s, name); got != value {
					t.Errorf("%s: %s has %s=%q, the bench runs %q (lab/native.ProductionSampler)", file, s.Name, name, got, value)
				}
			}
		}
		if traced < 3 {
			t.Errorf("%s: %d API or consumer services found, want at least 3", file, traced)
		}
	}
}

// The Helm chart's production values (its defaults, and values/prod and
// values/prod-external on top) ship the sampler the bench measures.
func TestHelmProdValuesShipTheBenchedSampler(t *testing.T) {
	want := productionSampler(t)
	type tracing struct {
		Sampler    string `yaml:"sampler"`
		SamplerArg string `yaml:"samplerArg"`
	}
	read := func(rel string) tracing {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Tracing tracing `yaml:"tracing"`
		}
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		return v.Tracing
	}
	defaults := read("deploy/k8s/chart/values.yaml")
	for _, overlay := range []string{"prod", "prod-external"} {
		got := defaults
		o := read("deploy/k8s/values/" + overlay + ".yaml")
		if o.Sampler != "" {
			got.Sampler = o.Sampler
		}
		if o.SamplerArg != "" {
			got.SamplerArg = o.SamplerArg
		}
		if got.Sampler != want["OTEL_TRACES_SAMPLER"] || got.SamplerArg != want["OTEL_TRACES_SAMPLER_ARG"] {
			t.Errorf("the chart with values/%s.yaml samples %s %q, the bench runs %s %q (lab/native.ProductionSampler)",
				overlay, got.Sampler, got.SamplerArg, want["OTEL_TRACES_SAMPLER"], want["OTEL_TRACES_SAMPLER_ARG"])
		}
	}
}
