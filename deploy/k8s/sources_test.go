package k8s

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

// root is the repository, two levels up.
var root = func() string {
	r, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return r
}()

func readRepo(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sources are the facts the manifests must agree with, each read from the
// one place the rest of the repository reads it from.
type sources struct {
	ports  map[string]string            // stack.env
	env    map[string]map[string]string // binary -> variable -> default (`-env`)
	routes []string                     // paths the API and consumer serve
	mounts []string                     // prefixes they serve below (/debug)
}

var (
	srcOnce sync.Once
	srcVal  *sources
	srcErr  error
)

// mustSources reads the sources once per test binary: `go run -env` builds
// three programs. Each caller gets its own copy to change.
func mustSources(t testing.TB) *sources {
	t.Helper()
	srcOnce.Do(func() {
		s := &sources{env: map[string]map[string]string{}}
		data, err := os.ReadFile(filepath.Join(root, "stack.env"))
		if err != nil {
			srcErr = err
			return
		}
		s.ports = parseEnvFile(data)
		for _, bin := range binaries {
			if s.env[bin], err = binaryEnv(bin); err != nil {
				srcErr = err
				return
			}
		}
		if s.routes, s.mounts, err = servedRoutes(); err != nil {
			srcErr = err
			return
		}
		srcVal = s
	})
	if srcErr != nil {
		t.Fatal(srcErr)
	}
	c := &sources{ports: map[string]string{}, env: map[string]map[string]string{}, routes: slices.Clone(srcVal.routes), mounts: slices.Clone(srcVal.mounts)}
	for k, v := range srcVal.ports {
		c.ports[k] = v
	}
	for bin, vars := range srcVal.env {
		c.env[bin] = map[string]string{}
		for k, v := range vars {
			c.env[bin][k] = v
		}
	}
	return c
}

// parseEnvFile reads NAME=VALUE lines ('#' starts a comment), the format of
// stack.env. TODO(lab/native): use its parser once it is on main.
func parseEnvFile(data []byte) map[string]string {
	vars := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, value, ok := strings.Cut(line, "="); ok {
			vars[name] = value
		}
	}
	return vars
}

// binaries are kvstack's programs that run in the cluster, each built into
// the image as /kvstack/<name> from ./cmd/<name>.
var binaries = []string{"api", "consumer", "migrate"}

// binaryEnv is what `go run ./cmd/<bin> -env` prints: every variable the
// binary reads, with its default, from its config structs.
func binaryEnv(bin string) (map[string]string, error) {
	cmd := exec.Command("go", "run", "./cmd/"+bin, "-env")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go run ./cmd/%s -env: %w\n%s", bin, err, stderr.Bytes())
	}
	vars := parseEnvFile(out)
	if len(vars) == 0 {
		return nil, fmt.Errorf("go run ./cmd/%s -env printed no variable", bin)
	}
	return vars, nil
}

// servedRoutes lists the paths registered in the packages that build
// kvstack's handlers: every call that passes a path literal with a handler
// (r.Get("/healthz", h), read(r, "/readyz", h), r.Method("GET", "/metrics",
// h)), and the prefixes mounted with r.Mount("/debug", …); a mount of "/"
// only hands over to another router, whose routes are listed.
func servedRoutes() (routes, mounts []string, err error) {
	for _, dir := range []string{"internal/httpapi", "internal/app"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			return nil, nil, err
		}
		fset := token.NewFileSet()
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(root, dir, name), nil, 0)
			if err != nil {
				return nil, nil, err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				name := ""
				switch fn := call.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					if pkg, ok := fn.X.(*ast.Ident); ok && slices.Contains([]string{"strings", "path", "fmt", "errors"}, pkg.Name) {
						return true
					}
					name = fn.Sel.Name
				}
				handler := false // a route comes with its handler
				for _, arg := range call.Args {
					if lit, ok := arg.(*ast.BasicLit); !ok || lit.Kind != token.STRING {
						handler = true
					}
				}
				if name == "" || !handler {
					return true
				}
				for _, arg := range call.Args {
					lit, ok := arg.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					p, err := strconv.Unquote(lit.Value)
					switch {
					case err != nil || !strings.HasPrefix(p, "/"):
					case name != "Mount":
						routes = append(routes, p)
					case p != "/":
						mounts = append(mounts, strings.TrimSuffix(p, "/")+"/")
					}
				}
				return true
			})
		}
	}
	if len(routes) == 0 {
		return nil, nil, fmt.Errorf("no route found in internal/httpapi or internal/app")
	}
	slices.Sort(routes)
	return slices.Compact(routes), mounts, nil
}

// serves reports whether path is one the binaries answer: a route, or
// below a mounted prefix.
func (s *sources) serves(path string) bool {
	if slices.Contains(s.routes, path) {
		return true
	}
	for _, m := range s.mounts {
		if strings.HasPrefix(path, m) {
			return true
		}
	}
	return false
}

func (s *sources) port(t testing.TB, name string) int32 {
	t.Helper()
	p, err := strconv.ParseInt(s.ports[name], 10, 32)
	if err != nil {
		t.Fatalf("stack.env: %s = %q: %v", name, s.ports[name], err)
	}
	return int32(p)
}

// nginxConf is nginx/nginx.conf.template's server: its directives, and the
// directives and proxying of each `location = /path` and of each named
// location (`location @name`) an exact one hands requests to.
type nginxConf struct {
	server    map[string]string
	locations map[string]map[string]string // exact path -> directive -> args
	named     map[string]map[string]string // @name -> directive -> args
}

func parseNginx(t testing.TB) nginxConf {
	t.Helper()
	conf := nginxConf{server: map[string]string{}, locations: map[string]map[string]string{}, named: map[string]map[string]string{}}
	var stack []string // open blocks
	var current map[string]string
	for _, raw := range strings.Split(string(readRepo(t, "nginx/nginx.conf.template")), "\n") {
		line := strings.TrimSpace(raw)
		if i := strings.Index(line, "#"); i >= 0 && !strings.Contains(line, "'") {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "":
		case strings.HasSuffix(line, "{"):
			head := strings.Fields(strings.TrimSuffix(line, "{"))
			block := strings.Join(head, " ")
			stack = append(stack, block)
			switch {
			case len(head) == 3 && head[0] == "location" && head[1] == "=":
				current = map[string]string{}
				conf.locations[head[2]] = current
			case len(head) == 2 && head[0] == "location" && strings.HasPrefix(head[1], "@"):
				current = map[string]string{}
				conf.named[head[1]] = current
			}
		case line == "}":
			if len(stack) > 0 && strings.HasPrefix(stack[len(stack)-1], "location") {
				current = nil
			}
			stack = stack[:len(stack)-1]
		default:
			name, args, _ := strings.Cut(strings.TrimSuffix(line, ";"), " ")
			args = strings.TrimSpace(args)
			switch {
			case current != nil:
				current[name] = args
			case len(stack) > 0 && stack[len(stack)-1] == "server":
				conf.server[name] = args
			}
		}
	}
	if len(conf.server) == 0 || len(conf.locations) == 0 {
		t.Fatal("nginx/nginx.conf.template: no server block or no `location = ` found")
	}
	return conf
}

// routed lists the paths nginx passes to the API.
func (c nginxConf) routed() []string {
	var paths []string
	for p, d := range c.locations {
		if _, ok := d["proxy_pass"]; ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	return paths
}

// handedTo lists the named locations that the location of path hands
// requests to, by the template's naming: /api's are @api_write,
// @api_read_wait… (the requests that wait for a version go there).
func (c nginxConf) handedTo(path string) []string {
	var names []string
	prefix := "@" + strings.ReplaceAll(strings.Trim(path, "/"), "/", "_") + "_"
	for name := range c.named {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// longest is the largest value of a duration directive over the location
// of path and the named locations it hands requests to: one Ingress path
// serves them all, so it must give the longest of them.
func (c nginxConf) longest(path, name string) (string, error) {
	best := c.directive(path, name)
	bestSec, err := nginxSeconds(best)
	if err != nil {
		return best, err
	}
	for _, n := range c.handedTo(path) {
		if v, ok := c.named[n][name]; ok {
			sec, err := nginxSeconds(v)
			if err != nil {
				return v, err
			}
			if sec > bestSec {
				best, bestSec = v, sec
			}
		}
	}
	return best, nil
}

// common is what a list directive (proxy_next_upstream) holds in the
// location of path and in every named location it hands requests to,
// each location's own setting or else the server's, in the order of the
// path's own.
func (c nginxConf) common(path, name string) string {
	var kept []string
	for _, v := range strings.Fields(c.directive(path, name)) {
		in := true
		for _, n := range c.handedTo(path) {
			own, ok := c.named[n][name]
			if !ok {
				own = c.server[name]
			}
			in = in && slices.Contains(strings.Fields(own), v)
		}
		if in {
			kept = append(kept, v)
		}
	}
	return strings.Join(kept, " ")
}

// carriesWrites is true when the location of path hands writes to a named
// location of its own (@api_write…).
func (c nginxConf) carriesWrites(path string) bool {
	return slices.ContainsFunc(c.handedTo(path), func(n string) bool { return strings.Contains(n, "_write") })
}

// directive is a location's own setting, else the server's.
func (c nginxConf) directive(path, name string) string {
	if v, ok := c.locations[path][name]; ok {
		return v
	}
	return c.server[name]
}

// scrapeJob is one job of observability/prometheus.yml.
type scrapeJob struct {
	Name   string              `json:"job_name"`
	Path   string              `json:"metrics_path"`
	Params map[string][]string `json:"params"`
}

func scrapeJobs(t testing.TB) map[string]scrapeJob {
	t.Helper()
	var cfg struct {
		ScrapeConfigs []scrapeJob `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readRepo(t, "observability/prometheus.yml"), &cfg); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]scrapeJob{}
	for _, j := range cfg.ScrapeConfigs {
		if j.Path == "" {
			j.Path = "/metrics"
		}
		jobs[j.Name] = j
	}
	return jobs
}

// queriedJobs lists the job names that the rules and the dashboard select
// with job="x" or job=~"x|y".
func queriedJobs(t testing.TB) []string {
	t.Helper()
	var text []byte
	files, _ := filepath.Glob(filepath.Join(root, "observability/rules/*.yml"))
	dashboards, _ := filepath.Glob(filepath.Join(root, "grafana/dashboards/*.json"))
	for _, f := range append(files, dashboards...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text = append(text, bytes.ReplaceAll(data, []byte(`\"`), []byte(`"`))...)
	}
	var jobs []string
	for _, m := range regexp.MustCompile(`job=~?"([^"]+)"`).FindAllSubmatch(text, -1) {
		jobs = append(jobs, strings.Split(string(m[1]), "|")...)
	}
	slices.Sort(jobs)
	return slices.Compact(jobs)
}

// composeImages maps each docker-compose.yml service to its image.
func composeImages(t testing.TB) map[string]string {
	t.Helper()
	var compose struct {
		Services map[string]struct {
			Image string `json:"image"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(readRepo(t, "docker-compose.yml"), &compose); err != nil {
		t.Fatal(err)
	}
	images := map[string]string{}
	for name, s := range compose.Services {
		images[name] = s.Image
	}
	return images
}
