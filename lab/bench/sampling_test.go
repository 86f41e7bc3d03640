package bench

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/lab/native"
)

// The kvstack column's consumer and the control run by the harness get
// the production sampler's share of the apply's messages sampled, the
// 100 % variant all of them, tracing off none, each of them runs, and the
// 100 % variant runs the native dev stack's sampler. The control's were
// once all sampled, and "tracing off" dropped from the consumer's
// variants when the control was added.
func TestSamplingColumns(t *testing.T) {
	if !slices.ContainsFunc(consumerVariants, func(c variant) bool { return c.name == colFull }) {
		t.Errorf("the consumer's variants lack %q", colFull)
	}
	want := map[string]float64{colKVStack: productionRatio, colHarness: productionRatio, colFull: 1, colUntraced: 0}
	for _, d := range (&harness{o: Options{}}).drainers(1, 1) {
		if w, ok := want[d.name]; ok {
			if d.sampled != w {
				t.Errorf("%q's messages are sampled at %v, want %v", d.name, d.sampled, w)
			}
			delete(want, d.name)
		}
	}
	for name := range want {
		t.Errorf("the apply runs no %q", name)
	}
	dev := settingsWith(t, nil)
	if got := dev.Get("OTEL_TRACES_SAMPLER") + " " + dev.Get("OTEL_TRACES_SAMPLER_ARG"); got != strings.Join(envValues(fullSampler), " ") {
		t.Errorf("the native stack samples %q, the %q variant runs %q", got, colFull, fullSampler)
	}
}

// make bench (and bench-smoke, and bench-ha on the HA topology) starts
// the native stack with the settings kvstack ships: the API replicas and
// the consumers it would run differ from shippedSettings in nothing.
// Without the Makefile's exports the native stack samples every trace,
// and the check says so.
func TestMakeBenchRunsTheShippedDefaults(t *testing.T) {
	exports := makeExports(t, "bench", "bench-smoke", "bench-ha")
	if !slices.Equal(exports, native.ProductionSampler) {
		t.Errorf("make bench, bench-smoke and bench-ha export %q, kvstack ships %q (lab/native.ProductionSampler)", exports, native.ProductionSampler)
	}
	procs := func(s *native.Settings) map[string]map[string]string {
		out := map[string]map[string]string{}
		for _, p := range native.Processes(s) {
			out[p.Name] = p.Env
		}
		return out
	}
	for _, tc := range []struct {
		target   string
		topology []string
		programs []string
	}{
		{"bench", nil, []string{"api1", "api2", "consumer"}},
		{"bench-ha", []string{"KV_TOPOLOGY=ha", "KV_STACK_DIR=" + t.TempDir()}, shippedPrograms},
	} {
		bench := procs(settingsWith(t, append(slices.Clone(tc.topology), exports...)))
		for _, name := range tc.programs {
			env, ok := bench[name]
			if !ok {
				t.Fatalf("make %s's stack runs no %s", tc.target, name)
			}
			if d := notShipped(env); len(d) > 0 {
				t.Errorf("make %s's %s: %q", tc.target, name, d)
			}
		}
		if d := notShipped(procs(settingsWith(t, tc.topology))["api1"]); len(d) == 0 {
			t.Errorf("the %s stack's own api1 (100 %% sampling) passes as shipped", tc.target)
		}
	}
}

// settingsWith are the native stack's settings with env as the only
// environment.
func settingsWith(t *testing.T, env []string) *native.Settings {
	t.Helper()
	s, err := native.Load(repoRoot(t), env)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// makeExports are the NAME=VALUE the Makefile exports for every one of
// targets ("bench bench-smoke: export NAME = VALUE" lines).
func makeExports(t *testing.T, targets ...string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		names, rest, ok := strings.Cut(line, ": export ")
		if !ok || !slices.Equal(strings.Fields(names), targets) {
			continue
		}
		name, value, _ := strings.Cut(rest, "=")
		out = append(out, strings.TrimSpace(name)+"="+strings.TrimSpace(value))
	}
	return out
}

func envValues(env []string) []string {
	out := make([]string, len(env))
	for i, kv := range env {
		_, out[i], _ = strings.Cut(kv, "=")
	}
	return out
}

// make bench-ha's kvbench reads the stack's settings as the HA
// topology's, which -scaleout requires: without the Makefile's export it
// read them as the single topology's and refused the stack up-ha started.
func TestMakeBenchHAReadsTheHATopology(t *testing.T) {
	s := settingsWith(t, append(makeExports(t, "bench-ha"), "KV_STACK_DIR="+t.TempDir()))
	if !(&stackView{s: s}).ha() {
		t.Errorf("make bench-ha exports %q: kvbench would read the single topology's settings", makeExports(t, "bench-ha"))
	}
}
