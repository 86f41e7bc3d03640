package sloth

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "write the generated rules to observability/rules (make slo)")

const (
	spec  = "../../observability/slo/kvstack.yml"
	rules = "../../observability/rules/kvstack-slo.yml"
	// The module whose cmd/sloth this go.mod's tool directive builds.
	slothModule = "github.com/slok/sloth"
)

// buildSloth builds the Sloth of go.mod, stamped with its module version
// (a tool built from a dependency module does not know it, and says "dev"
// in the header of what it generates).
func buildSloth(t *testing.T) string {
	t.Helper()
	version := strings.TrimSpace(run(t, "go", "list", "-m", "-f", "{{.Version}}", slothModule))
	bin := filepath.Join(t.TempDir(), "sloth")
	run(t, "go", "build", "-o", bin,
		"-ldflags=-X "+slothModule+"/internal/info.Version="+version, slothModule+"/cmd/sloth")
	return bin
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// The committed SLO rules are exactly what Sloth generates from the specs:
// nobody edited them by hand, and nobody changed a spec without
// regenerating them.
func TestRulesAreGeneratedFromTheSpecs(t *testing.T) {
	sloth := buildSloth(t)
	run(t, sloth, "validate", "--no-log", "-i", spec)
	out := filepath.Join(t.TempDir(), "kvstack-slo.yml")
	run(t, sloth, "generate", "--no-log", "-i", spec, "-o", out)
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(rules, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", rules)
		return
	}
	got, err := os.ReadFile(rules)
	if err != nil {
		t.Fatalf("%v (make slo generates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what Sloth generates from %s: run `make slo` and commit the result\n%s",
			rules, spec, firstDifference(string(got), string(want)))
	}
}

// firstDifference shows the first line that differs, with its number.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n  committed: " + gl + "\n  generated: " + wl
		}
	}
	return ""
}
