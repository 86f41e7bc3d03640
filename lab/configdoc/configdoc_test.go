// Package configdoc generates docs/CONFIGURATION.md from the code's own
// definitions of its settings, and fails when the committed file differs
// or when a variable the code reads is documented nowhere in it:
//
//	go -C lab test ./configdoc -update   (or make config-doc)
package configdoc

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/lab/native"
)

var update = flag.Bool("update", false, "write docs/CONFIGURATION.md")

// root is the repository, seen from lab/configdoc.
const root = "../.."

const target = "docs/CONFIGURATION.md"

func TestConfigurationDocIsGenerated(t *testing.T) {
	got := generate(t)
	path := filepath.Join(root, target)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what the code defines: run `go -C lab test ./configdoc -update` (make config-doc) and commit it", target)
	}
}

// Every variable the code reads by name is in the document.
func TestEveryVariableReadIsDocumented(t *testing.T) {
	doc := string(generate(t))
	for _, name := range variablesRead(t) {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("%s is read by the code but not documented in %s: give it a row (lab/configdoc)", name, target)
		}
	}
}

// binary is one of the service's binaries and the configuration it reads.
type binary struct {
	name string
	vars []config.Var
}

func binaries() []binary {
	return []binary{
		{"api", config.Vars[config.API]()},
		{"consumer", config.Vars[config.Consumer]()},
		{"migrate", config.Vars[config.Migrate]()},
	}
}

func generate(t *testing.T) []byte {
	t.Helper()
	fields := envFields(t)
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Configuration\n\n")
	w("Generated from the code by `go -C lab test ./configdoc -update` (`make config-doc`);\n")
	w("do not edit by hand: a test fails when this file differs from what the code\n")
	w("defines, or when the code reads a variable this file does not name.\n\n")
	w("Everything is configured by environment variables. Each process logs its\n")
	w("configuration at start with passwords masked.\n\n")

	w("## The binaries\n\n")
	w("What `cmd/api`, `cmd/consumer` and `cmd/migrate` read: each prints its own list,\n")
	w("with the defaults, with `-env` (`go run ./cmd/api -env`). The meaning is the\n")
	w("comment of the configuration field that reads the variable.\n\n")
	w("| variable | api | consumer | migrate | default | field | meaning |\n|---|---|---|---|---|---|---|\n")
	var order []string
	readBy := map[string]map[string]bool{}
	def := map[string]string{}
	for _, bin := range binaries() {
		for _, v := range bin.vars {
			if readBy[v.Name] == nil {
				readBy[v.Name] = map[string]bool{}
				order = append(order, v.Name)
				def[v.Name] = v.Default
			}
			readBy[v.Name][bin.name] = true
		}
	}
	for _, name := range order {
		f, ok := fields[name]
		if !ok || f.doc == "" {
			t.Errorf("%s: its field has no comment; say what it does there", name)
		}
		marks := make([]string, 0, 3)
		for _, bin := range []string{"api", "consumer", "migrate"} {
			marks = append(marks, map[bool]string{true: "✓", false: ""}[readBy[name][bin]])
		}
		w("| `%s` | %s | %s | `%s` | %s |\n", name, strings.Join(marks, " | "), code(def[name]), f.field, cell(f.doc))
	}

	gcPercent, memoryLimit := gcDefaults(t)
	w("\n## The Go runtime\n\n")
	w("| variable | default | meaning |\n|---|---|---|\n")
	w("| `GOGC` | `%s` in api and consumer | Go's garbage collector target; the binaries set %s unless it is set (`internal/app/gc.go` says why) |\n", gcPercent, gcPercent)
	w("| `GOMEMLIMIT` | `%s` in api and consumer | Go's soft memory limit; the binaries set %s unless it is set |\n", memoryLimit, memoryLimit)
	w("| `GODEBUG` | | Go's runtime switches; the native stack passes it on to the binaries |\n")

	w("\n## Tracing (OpenTelemetry)\n\n")
	w("The standard variables. `service.name` is `kv-api` or `kv-consumer`,\n")
	w("`service.instance.id` is `KV_INSTANCE_ID`. Over `http/protobuf` kvstack's own\n")
	w("exporter encodes spans (`internal/telemetry`); certificates or compression,\n")
	w("and `grpc`, use the official exporters.\n\n")
	w("| variable | default | meaning |\n|---|---|---|\n")
	for _, r := range otelRows {
		w("| `%s` | %s | %s |\n", r[0], r[1], r[2])
	}

	w("\n## The native stack\n\n")
	w("`bin/stack` (`make up`, `lab/native`) reads these besides the binaries'\n")
	w("variables, which it passes on to the processes; `make env` prints them with\n")
	w("their current values. An environment variable of the same name wins.\n\n")
	w("| variable | default | meaning |\n|---|---|---|\n")
	for _, v := range native.Variables {
		w("| `%s` | %s | %s |\n", v.Name, code(v.Default), cell(v.Doc))
	}
	w("\nThe ports, from [stack.env](../stack.env), the one list both stacks use:\n\n")
	w("| variable | default | meaning |\n|---|---|---|\n")
	for _, e := range commentedAssignments(t, "stack.env", "#", regexp.MustCompile(`^([A-Z0-9_]+)=(.*)$`)) {
		w("| `%s` | `%s` | %s |\n", e.name, e.value, cell(e.doc))
	}

	w("\n## make and the scripts\n\n")
	w("Set on the command line (`make bench BENCH_ARGS=…`) or in the environment.\n\n")
	w("| variable | default | meaning |\n|---|---|---|\n")
	for _, e := range commentedAssignments(t, "Makefile", "#:", regexp.MustCompile(`^([A-Z_]+)\s*\?=\s*(.*)$`)) {
		if e.doc == "" {
			t.Errorf("Makefile: %s has no #: line above it; say what it does there", e.name)
		}
		w("| `%s` | %s | %s |\n", e.name, code(e.value), cell(e.doc))
	}
	for _, e := range commentedAssignments(t, "lab/scripts/services.sh", "#", regexp.MustCompile(`^([A-Z_]+)="\$\{[A-Z_]+:-([^}]*)\}"\s*#\s*(.*)$`)) {
		w("| `%s` | %s | %s (`lab/scripts/services.sh`) |\n", e.name, code(e.value), cell(e.doc))
	}
	w("| `KV_BENCH_PORT` | `18080` | the first of the 50 ports of the benchmark's own processes (`lab/bench`; `kvbench -ports`) |\n")

	w("\n## Tests\n\n")
	w("| variable | default | meaning |\n|---|---|---|\n")
	w("| `DATABASE_URL`, `REDIS_ADDR`, `REDIS_PASSWORD`, `RABBITMQ_URL` | the binaries' | the shared services the tests use (`internal/postgres/pgtest`, `internal/redis/redistest`, `internal/rabbitmq/rabbittest`); a test that cannot reach one fails |\n")
	w("| `REDIS_TEST_DB` | `15` | the Redis database the tests use, so that a developer's keys in database 0 are never touched (`internal/redis/redistest`) |\n")
	w("| `START_TIMEOUT` | 2 min × the load per core above 1, at most 10 min | seconds a test's private engine gets to answer, and a private Redis Cluster to form (`internal/engine.StartTimeout`); the variable `lab/scripts/services.sh` reads too: set, it is the bound of both |\n")
	return b.Bytes()
}

// otelRows are the OpenTelemetry variables kvstack reads itself
// (internal/telemetry) or through the SDK.
var otelRows = [][3]string{
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "`http://localhost:4318`", "where spans go (`/v1/traces` is appended over HTTP)"},
	{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "the same, for traces only, used as given"},
	{"OTEL_EXPORTER_OTLP_PROTOCOL", "`http/protobuf`", "`http/protobuf` or `grpc`"},
	{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "", "the same, for traces only"},
	{"OTEL_EXPORTER_OTLP_HEADERS", "", "`key=value,…` sent with every export"},
	{"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "", "the same, for traces only"},
	{"OTEL_EXPORTER_OTLP_TIMEOUT", "`10000`", "milliseconds an export may take"},
	{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "", "the same, for traces only"},
	{"OTEL_TRACES_EXPORTER", "`otlp`", "`none` switches tracing off"},
	{"OTEL_TRACES_SAMPLER", "`parentbased_always_on`", "in production `parentbased_traceidratio` ([OBSERVABILITY.md](OBSERVABILITY.md#tracing-find-a-writes-trace))"},
	{"OTEL_TRACES_SAMPLER_ARG", "", "the ratio, `0.1` for 10 %"},
	{"OTEL_SERVICE_NAME", "`kv-api`, `kv-consumer`", "overrides `service.name`"},
	{"OTEL_RESOURCE_ATTRIBUTES", "", "`key=value,…` added to every span's resource"},
	{"OTEL_BSP_SCHEDULE_DELAY", "`5000`", "the SDK's batch span processor: milliseconds between exports (and the other `OTEL_BSP_*`)"},
}

// envField is the configuration field that reads a variable.
type envField struct {
	field string // package.Type.Field
	doc   string
}

// envFields maps each env tag of the service's configuration structs to its
// field and comment. A field without a comment of its own shares the one of
// the field right above it when no blank line parts them and that comment
// names it ("TTL bounds …; TombstoneTTL how long …").
func envFields(t *testing.T) map[string]envField {
	t.Helper()
	fields := map[string]envField{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := spec.Type.(*ast.StructType)
			if !ok {
				return true
			}
			prevDoc, prevEnd := "", 0
			for _, fld := range st.Fields.List {
				doc := ""
				if fld.Doc != nil {
					doc = fld.Doc.Text()
				} else if fld.Comment != nil {
					doc = fld.Comment.Text()
				} else if len(fld.Names) > 0 && fset.Position(fld.Pos()).Line == prevEnd+1 &&
					regexp.MustCompile(`\b`+fld.Names[0].Name+`\b`).MatchString(prevDoc) {
					doc = prevDoc
				}
				prevDoc, prevEnd = doc, fset.Position(fld.End()).Line
				if fld.Tag == nil || len(fld.Names) == 0 {
					continue
				}
				tag, _ := strconv.Unquote(fld.Tag.Value)
				if name, _, _ := strings.Cut(reflect.StructTag(tag).Get("env"), ","); name != "" {
					fields[name] = envField{field: f.Name.Name + "." + spec.Name.Name + "." + fld.Names[0].Name, doc: doc}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fields
}

// gcDefaults reads the binaries' GC settings from internal/app/gc.go.
func gcDefaults(t *testing.T) (percent, limit string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, "internal/app/gc.go"))
	if err != nil {
		t.Fatal(err)
	}
	p := regexp.MustCompile(`gcPercent\s*=\s*(\d+)`).FindSubmatch(src)
	l := regexp.MustCompile(`memoryLimit\s*=\s*(\d+) << 20`).FindSubmatch(src)
	if p == nil || l == nil {
		t.Fatal("internal/app/gc.go: gcPercent or memoryLimit (N << 20) not found; update lab/configdoc")
	}
	return string(p[1]), string(l[1]) + "MiB"
}

// assignment is one NAME=value line of a file, with the comment lines
// right above it (or, for the scripts, the comment after it on its line).
type assignment struct{ name, value, doc string }

func commentedAssignments(t *testing.T, file, prefix string, re *regexp.Regexp) []assignment {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	var out []assignment
	var comment []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if c, ok := strings.CutPrefix(line, prefix); ok && !strings.HasPrefix(line, "##") {
			comment = append(comment, strings.TrimSpace(c))
			continue
		}
		if m := re.FindStringSubmatch(line); m != nil {
			doc := strings.Join(comment, " ")
			if len(m) > 3 {
				doc = m[3]
			}
			out = append(out, assignment{name: m[1], value: strings.TrimSpace(m[2]), doc: doc})
		}
		comment = nil
	}
	return out
}

// variablesRead are the variables the code reads by a literal name.
func variablesRead(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`(?:os\.Getenv|os\.LookupEnv|envPort)\("([A-Z][A-Z0-9_]*)"`)
	otel := regexp.MustCompile(`"(OTEL_[A-Z_]*[A-Z])"`)
	seen := map[string]bool{}
	for _, dir := range []string{"internal", "cmd", "lab"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllSubmatch(src, -1) {
				seen[string(m[1])] = true
			}
			if strings.Contains(path, "internal/telemetry") {
				for _, m := range otel.FindAllSubmatch(src, -1) {
					seen[string(m[1])] = true
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	delete(seen, "PATH") // the shell's
	for n := range seen {
		if strings.HasSuffix(n, "_") { // a prefix, completed at run time
			delete(seen, n)
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// cell makes a comment one table cell: one line, pipes escaped.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}
