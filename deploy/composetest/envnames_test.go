package composetest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Besides their env tags, the binaries read variables through libraries.
var (
	// The Go runtime, in every binary.
	runtimeVars = []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG", "GOTRACEBACK"}
	// The OpenTelemetry SDK and its OTLP trace exporters
	// (opentelemetry-specification, sdk-environment-variables and the
	// OTLP exporter's configuration), in the binaries that set up tracing
	// (app.Main: internal/telemetry).
	otelVars = []string{
		"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_PROPAGATORS",
		"OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
		"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
		"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
		"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
		"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_CERTIFICATE",
	}
	// Library defaults that name the host itself, which in a container is
	// the container: compose must set them.
	otelLoopbackDefaults = map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}
)

// envVar is one variable a binary reads through its configuration.
type envVar struct {
	name, def string
}

// built holds cmd/api, cmd/consumer and cmd/migrate, built once per run.
var built struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	privatePG.Close()
	privateBroker.Close()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binaryVars lists what the program cmd/<name> reads, as it says itself
// (`<name> -env`: its configuration's env tags, NAME=default a line), and
// whether it sets up tracing, which reads the OpenTelemetry SDK's variables
// (its main runs through app.Main).
func binaryVars(t *testing.T, name string) (vars []envVar, traced bool) {
	out, err := exec.Command(builtBinary(t, name), "-env").Output()
	if err != nil {
		t.Fatalf("cmd/%s -env: %v", name, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		n, def, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("cmd/%s -env: %q is not NAME=default", name, line)
		}
		vars = append(vars, envVar{n, def})
	}
	main, err := os.ReadFile(filepath.Join(root, "cmd", name, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	return vars, strings.Contains(string(main), "app.Main(")
}

// builtBinary is the path of cmd/<name> (api, consumer or migrate), built
// once per run.
func builtBinary(t *testing.T, name string) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "composetest-bin"); built.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", built.dir+"/", "./cmd/api", "./cmd/consumer", "./cmd/migrate")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return filepath.Join(built.dir, name)
}

var loopback = regexp.MustCompile(`\b(127\.0\.0\.1|localhost)\b`)

// checkEnvNames: each service running one of our binaries sets only
// variables that binary reads (a misspelt one is silently ignored), and sets
// every one whose default names the host itself (127.0.0.1, localhost),
// which in a container is the container: the listen address would refuse
// the other containers, the others would reach nothing.
func checkEnvNames(t *testing.T, tr tree) []string {
	p := tr.project(t)
	var problems []string
	for _, name := range sorted(p.ServiceNames()) {
		s := service(t, p, name)
		if s.Image != kvstackImageName || len(s.Command) == 0 {
			continue
		}
		bin := path.Base(s.Command[0])
		vars, traced := binaryVars(t, bin)
		reads := map[string]bool{}
		required := map[string]string{}
		for _, v := range vars {
			reads[v.name] = true
			if loopback.MatchString(v.def) {
				required[v.name] = v.def
			}
		}
		for _, v := range runtimeVars {
			reads[v] = true
		}
		if traced {
			for _, v := range otelVars {
				reads[v] = true
			}
			for v, def := range otelLoopbackDefaults {
				required[v] = def
			}
		}
		for v := range s.Environment {
			if !reads[v] {
				problems = append(problems, name+" sets "+v+", which cmd/"+bin+" does not read")
			}
		}
		for v, def := range required {
			if _, ok := s.Environment[v]; !ok {
				problems = append(problems, name+" does not set "+v+", whose default "+def+" is the container itself")
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// The binaries say which variables they read: a sample of each.
func TestBinaryVarsFromSource(t *testing.T) {
	for bin, want := range map[string][]string{
		"api":      {"KV_HTTP_ADDR", "KV_MAX_BODY_BYTES", "DATABASE_URL", "REDIS_ADDR", "RABBITMQ_URL", "LOG_LEVEL"},
		"consumer": {"KV_CONSUMER_ADDR", "CONSUMER_BATCH_SIZE", "KV_TOMBSTONE_RETENTION", "REDIS_ADDR"},
		"migrate":  {"DATABASE_URL", "KV_MIGRATE_WAIT", "LOG_LEVEL"},
	} {
		vars, traced := binaryVars(t, bin)
		names := map[string]bool{}
		for _, v := range vars {
			names[v.name] = true
		}
		for _, w := range want {
			if !names[w] {
				t.Errorf("cmd/%s: %s not found among %v", bin, w, vars)
			}
		}
		if traced != (bin != "migrate") {
			t.Errorf("cmd/%s: traced = %v", bin, traced)
		}
	}
}
