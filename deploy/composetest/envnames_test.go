package composetest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
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

// envVar is one variable a binary reads through an env tag.
type envVar struct {
	name, def string
}

// binaryVars lists what the program cmd/<name> reads: the env tags of its
// configuration struct (found from its main.go: config.Load[config.T], or
// app.Main("...", app.RunX) and RunX's config parameter), and whether it
// sets up tracing (app.Main).
func binaryVars(t *testing.T, name string) (vars []envVar, traced bool) {
	mod := modulePath(t)
	f := parseFile(t, filepath.Join(root, "cmd", name, "main.go"))
	var typeName string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.IndexExpr: // config.Load[config.T]
			if sel, ok := n.X.(*ast.SelectorExpr); ok && sel.Sel.Name == "Load" {
				if arg, ok := n.Index.(*ast.SelectorExpr); ok {
					typeName = arg.Sel.Name
				}
			}
		case *ast.CallExpr: // app.Main("kv-api", app.RunAPI)
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Main" && len(n.Args) == 2 {
				traced = true
				if run, ok := n.Args[1].(*ast.SelectorExpr); ok {
					typeName = runConfigType(t, run.Sel.Name)
				}
			}
		}
		return true
	})
	if typeName == "" {
		t.Fatalf("cmd/%s/main.go: cannot tell which configuration it loads", name)
	}
	collectEnv(t, mod, filepath.Join(root, "internal", "config"), typeName, &vars)
	return vars, traced
}

// runConfigType is the config type of internal/app's run function fn:
// func RunAPI(ctx context.Context, cfg config.API, ...).
func runConfigType(t *testing.T, fn string) string {
	for _, f := range parseDir(t, filepath.Join(root, "internal", "app")) {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Name.Name != fn || fd.Type.Params.NumFields() < 2 {
				continue
			}
			if sel, ok := fd.Type.Params.List[1].Type.(*ast.SelectorExpr); ok {
				return sel.Sel.Name
			}
		}
	}
	t.Fatalf("internal/app has no func %s(ctx, cfg config.T, ...)", fn)
	return ""
}

// collectEnv appends the env tags of struct typeName in dir, following
// nested and embedded structs of kvstack's own packages, as caarlos0/env
// does.
func collectEnv(t *testing.T, mod, dir, typeName string, out *[]envVar) {
	files := parseDir(t, dir)
	f, ts := findType(files, typeName)
	if ts == nil {
		t.Fatalf("no type %s in %s", typeName, dir)
	}
	st, ok := ts.Type.(*ast.StructType)
	if !ok {
		t.Fatalf("%s.%s is not a struct", dir, typeName)
	}
	for _, field := range st.Fields.List {
		if field.Tag != nil {
			tag, _ := strconv.Unquote(field.Tag.Value)
			if name, _, _ := strings.Cut(reflect.StructTag(tag).Get("env"), ","); name != "" {
				*out = append(*out, envVar{name, reflect.StructTag(tag).Get("envDefault")})
				continue
			}
		}
		switch ft := field.Type.(type) {
		case *ast.Ident: // a struct of the same package
			if _, ts := findType(files, ft.Name); ts != nil {
				if _, ok := ts.Type.(*ast.StructType); ok {
					collectEnv(t, mod, dir, ft.Name, out)
				}
			}
		case *ast.SelectorExpr: // pkg.Config of one of ours
			if x, ok := ft.X.(*ast.Ident); ok {
				if imp := importPath(f, x.Name); strings.HasPrefix(imp, mod+"/") {
					collectEnv(t, mod, filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(imp, mod+"/"))), ft.Sel.Name, out)
				}
			}
		}
	}
}

// findType finds a type declaration, and the file it is in.
func findType(files []*ast.File, name string) (*ast.File, *ast.TypeSpec) {
	for _, f := range files {
		for _, d := range f.Decls {
			if gd, ok := d.(*ast.GenDecl); ok {
				for _, spec := range gd.Specs {
					if ts, ok := spec.(*ast.TypeSpec); ok && ts.Name.Name == name {
						return f, ts
					}
				}
			}
		}
	}
	return nil, nil
}

func importPath(f *ast.File, name string) string {
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if imp.Name != nil && imp.Name.Name == name || imp.Name == nil && path.Base(p) == name {
			return p
		}
	}
	return ""
}

func parseFile(t *testing.T, file string) *ast.File {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// parseDir parses a package's non-test files.
func parseDir(t *testing.T, dir string) []*ast.File {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			files = append(files, parseFile(t, filepath.Join(dir, n)))
		}
	}
	return files
}

func modulePath(t *testing.T) string {
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no module line")
	}
	return string(m[1])
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
		if s.Build == nil || len(s.Command) == 0 {
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

// The binaries' variables are found from the source: a sample of each.
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
