package sloth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

var update = flag.Bool("update", false, "write the generated rules to observability/rules (make slo)")

const (
	spec  = "../../observability/slo/kvstack.yml"
	rules = "../../observability/rules/kvstack-slo.yml"
	// The module whose cmd/sloth this go.mod's tool directive builds.
	slothModule = "github.com/slok/sloth"
)

// buildSloth is the machine's one build of the Sloth of go.mod, stamped
// with its module version (a tool built from a dependency module does not
// know it, and says "dev" in the header of what it generates). Like the
// stack's Jaeger it lives in the user's cache directory (~/.cache/kvstack),
// keyed by this module's go.mod and go.sum and the Go release, so that
// every run and every checkout of the machine after the first reuses it
// instead of compiling and linking Sloth again (2–3 minutes cold on a
// loaded 2-core machine); another Sloth in go.mod is another key.
func buildSloth(t *testing.T) string {
	t.Helper()
	key, err := slothKey()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "kvstack")
	bin := filepath.Join(dir, "sloth-"+key)
	if isFile(bin) {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Of two checkouts that need it at once, one builds and the other
	// waits for that build, then finds it made.
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close() // releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", lock.Name(), err)
	}
	if isFile(bin) {
		return bin
	}
	version := strings.TrimSpace(run(t, "go", "list", "-m", "-f", "{{.Version}}", slothModule))
	tmp := filepath.Join(t.TempDir(), "sloth")
	run(t, "go", "build", "-o", tmp,
		"-ldflags=-X "+slothModule+"/internal/info.Version="+version, slothModule+"/cmd/sloth")
	b, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	// Written beside, then renamed: nobody ever runs half a binary.
	if err := os.WriteFile(bin+".tmp", b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s (Sloth %s), reused by the next runs", bin, version)
	return bin
}

// slothKey is the first 16 hex digits of the SHA-256 of go.mod, go.sum
// and the Go release that builds Sloth.
func slothKey() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
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
