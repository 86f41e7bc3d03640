package composetest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/kvstack/kvstack/lab/native"
)

// The configs the containers read are rendered here as compose renders them
// (render-config's envsubst, the nginx image's templates), laid out as the
// container sees them, and handed to each program's own checker: promtool,
// amtool, nginx -t and Jaeger's `validate` verb (Jaeger v2 is an
// OpenTelemetry Collector distribution; `validate` builds every component
// from the config without starting it). The checkers are the host's
// (make setup-all; bin/jaeger from `make jaeger`, the module paired with the
// image's release); they may be older than the images, so they can only err
// on the side of refusing.

var placeholder = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*\}`)

// envsubst replaces ${NAME} for the names given (all when names is nil),
// with the value in vars or "" as envsubst does.
func envsubst(text string, vars map[string]*string, names map[string]bool) string {
	return placeholder.ReplaceAllStringFunc(text, func(m string) string {
		name := m[2 : len(m)-1]
		if names != nil && !names[name] {
			return m
		}
		if v := vars[name]; v != nil {
			return *v
		}
		if names == nil {
			return m // the nginx image substitutes only variables that are set
		}
		return ""
	})
}

// bindSource is the repository file or folder a service mounts at target.
func bindSource(t *testing.T, s types.ServiceConfig, target string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			rel, err := filepath.Rel(root, v.Source)
			if err != nil {
				t.Fatal(err)
			}
			return filepath.ToSlash(rel)
		}
	}
	t.Fatalf("%s mounts nothing at %s", s.Name, target)
	return ""
}

// rendered runs render-config's script: each `envsubst 'LIST' < IN > OUT`
// of its command, IN read through its mounts. It returns OUT -> text.
func rendered(t *testing.T, tr tree, p *types.Project) map[string]string {
	rc := service(t, p, "render-config")
	script := strings.Join(rc.Command, " ")
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`envsubst\s+'([^']*)'\s*<\s*([^\s;]+)\s*>\s*([^\s;]+)`).FindAllStringSubmatch(script, -1) {
		names := map[string]bool{}
		for _, v := range placeholder.FindAllString(m[1], -1) {
			names[v[2:len(v)-1]] = true
		}
		out[m[3]] = envsubst(string(tr.read(t, bindSource(t, rc, m[2]))), rc.Environment, names)
	}
	if len(out) == 0 {
		t.Fatalf("render-config's command renders nothing: %q", script)
	}
	return out
}

// leftovers names the ${...} still in a rendered file's uncommented lines.
func leftovers(what, text string) []string {
	var problems []string
	for _, line := range strings.Split(text, "\n") {
		if code, _, _ := strings.Cut(line, "#"); placeholder.MatchString(code) {
			problems = append(problems, what+" still holds "+strings.Join(placeholder.FindAllString(code, -1), " ")+" after rendering")
		}
	}
	return problems
}

// containerFS lays out in a temporary folder the files service name sees:
// its bind mounts from the tree, and the files render-config wrote into the
// volume it mounts. It returns the folder; a container path P is dir+P.
func containerFS(t *testing.T, tr tree, p *types.Project, name string) string {
	dir := t.TempDir()
	s := service(t, p, name)
	var out types.ServiceVolumeConfig // where render-config writes
	for _, v := range service(t, p, "render-config").Volumes {
		if v.Type == types.VolumeTypeVolume {
			out = v
		}
	}
	for _, v := range s.Volumes {
		switch {
		case v.Type == types.VolumeTypeBind:
			copyTree(t, tr, bindSource(t, s, v.Target), filepath.Join(dir, v.Target))
		case v.Type == types.VolumeTypeVolume && v.Source == out.Source:
			for file, text := range rendered(t, tr, p) {
				rel, err := filepath.Rel(out.Target, file)
				if err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(dir, v.Target, rel), text)
			}
		}
	}
	return dir
}

// copyTree copies a repository file or folder, as the tree has it, to dst.
func copyTree(t *testing.T, tr tree, rel, dst string) {
	src := filepath.Join(root, filepath.FromSlash(rel))
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		sub, _ := filepath.Rel(src, p)
		write(t, filepath.Join(dst, sub), string(tr.read(t, filepath.ToSlash(filepath.Join(rel, sub)))))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, file, text string) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// inFS rewrites the container paths below the given mount targets in text
// to where containerFS put them.
func inFS(text, dir string, s types.ServiceConfig) string {
	targets := []string{}
	for _, v := range s.Volumes {
		targets = append(targets, v.Target)
	}
	sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	for _, target := range targets {
		text = regexp.MustCompile(`(^|[\s"'\[])`+regexp.QuoteMeta(target)).ReplaceAllString(text, "${1}"+filepath.Join(dir, target))
	}
	return text
}

// tool runs a checker; a missing one is a problem, never a skip.
func tool(name string, args []string, env []string) (string, bool, string) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", false, name + " is not installed: `make setup-all` installs it"
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err == nil, ""
}

// run turns a checker's verdict into problems.
func run(what, name string, args, env []string) []string {
	out, ok, missing := tool(name, args, env)
	switch {
	case missing != "":
		return []string{missing}
	case !ok:
		return []string{what + " rejects it:\n" + out}
	}
	return nil
}

// flagArg is the value of --name=value in a command.
func flagArg(t *testing.T, s types.ServiceConfig, name string) string {
	for _, a := range s.Command {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	t.Fatalf("%s: command %v has no --%s", s.Name, s.Command, name)
	return ""
}

func checkPrometheusConfig(t *testing.T, tr tree) []string {
	p := tr.project(t)
	s := service(t, p, "prometheus")
	dir := containerFS(t, tr, p, "prometheus")
	file := filepath.Join(dir, flagArg(t, s, "config.file"))
	text, err := os.ReadFile(file)
	if err != nil {
		return []string{"prometheus reads " + flagArg(t, s, "config.file") + ", which nothing renders"}
	}
	problems := leftovers("prometheus.yml", string(text))
	write(t, file, inFS(string(text), dir, s))
	return append(problems, run("promtool check config", "promtool", []string{"check", "config", file}, nil)...)
}

func checkPrometheusRules(t *testing.T, tr tree) []string {
	p := tr.project(t)
	dir := containerFS(t, tr, p, "prometheus")
	rules, _ := filepath.Glob(filepath.Join(dir, "etc", "prometheus", "rules", "*.yml"))
	if len(rules) == 0 {
		return []string{"prometheus sees no rules in /etc/prometheus/rules"}
	}
	return run("promtool check rules", "promtool", append([]string{"check", "rules"}, rules...), nil)
}

func checkAlertmanagerConfig(t *testing.T, tr tree) []string {
	p := tr.project(t)
	s := service(t, p, "alertmanager")
	dir := containerFS(t, tr, p, "alertmanager")
	file := filepath.Join(dir, flagArg(t, s, "config.file"))
	text, err := os.ReadFile(file)
	if err != nil {
		return []string{"alertmanager reads " + flagArg(t, s, "config.file") + ", which nothing renders"}
	}
	return append(leftovers("alertmanager.yml", string(text)),
		run("amtool check-config", "amtool", []string{"check-config", file}, nil)...)
}

// checkNginxConfig renders nginx.conf as the nginx image does (its
// 20-envsubst-on-templates.sh: every set variable, into
// NGINX_ENVSUBST_OUTPUT_DIR) and runs nginx -t on it. The upstreams' names
// resolve only on compose's network: here they become 127.0.0.1.
func checkNginxConfig(t *testing.T, tr tree) []string {
	p := tr.project(t)
	s := service(t, p, "nginx")
	const tmpl = "/etc/nginx/templates/nginx.conf.template"
	text := envsubst(string(tr.read(t, bindSource(t, s, tmpl))), s.Environment, nil)
	problems := leftovers("nginx.conf", text)
	for _, name := range p.ServiceNames() {
		text = strings.ReplaceAll(text, "server "+name+":", "server 127.0.0.1:")
	}
	if out := env(s, "NGINX_ENVSUBST_OUTPUT_DIR"); out != "/etc/nginx" {
		problems = append(problems, "nginx: NGINX_ENVSUBST_OUTPUT_DIR = "+out+": the template would not become /etc/nginx/nginx.conf")
	}
	dir := t.TempDir()
	// The certificate and key `make tls` makes (not in the repository):
	// made here as it makes them, where nginx.conf names the mounts.
	tlsDir := filepath.Join(dir, "tls")
	if _, err := native.MakeEdgeCerts(tlsDir, []string{"localhost"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	made := map[string]string{generatedEdgeCert: native.EdgeFile, generatedEdgeKey: native.EdgeKeyFile}
	for _, v := range s.Volumes {
		if rel, _ := filepath.Rel(root, v.Source); v.Type == types.VolumeTypeBind && made[rel] != "" {
			text = strings.ReplaceAll(text, " "+v.Target+";", " "+filepath.Join(tlsDir, made[rel])+";")
		}
	}
	for _, name := range []string{"NGINX_TLS_CERT", "NGINX_TLS_KEY"} {
		if f := env(s, name); !mounted(s, f) {
			problems = append(problems, "nginx: "+name+" = "+f+", which no volume mounts")
		}
	}
	// Files nginx writes into its named volumes (the access log mtail
	// reads) go to a directory of the test's.
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume {
			vol := filepath.Join(dir, "volumes", v.Source)
			if err := os.MkdirAll(vol, 0o755); err != nil {
				t.Fatal(err)
			}
			text = strings.ReplaceAll(text, " "+v.Target+"/", " "+vol+"/")
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	write(t, conf, text)
	return append(problems, run("nginx -t", "nginx", []string{"-t", "-q", "-p", dir + "/", "-c", conf,
		"-e", filepath.Join(dir, "error.log"), "-g", "pid " + filepath.Join(dir, "nginx.pid") + ";"}, nil)...)
}

// mounted tells whether a volume of s is mounted at path.
func mounted(s types.ServiceConfig, path string) bool {
	for _, v := range s.Volumes {
		if v.Target == path {
			return true
		}
	}
	return false
}

// checkJaegerConfig runs `jaeger validate` on the config compose mounts,
// with the jaeger service's environment (the config reads ${env:...}).
func checkJaegerConfig(t *testing.T, tr tree) []string {
	p := tr.project(t)
	s := service(t, p, "jaeger")
	jaeger := filepath.Join(root, "bin", "jaeger")
	if _, err := os.Stat(jaeger); err != nil {
		return []string{"bin/jaeger is missing: `make jaeger` builds it (~4 min the first time)"}
	}
	dir := containerFS(t, tr, p, "jaeger")
	var vars []string
	for k, v := range s.Environment {
		if v != nil {
			vars = append(vars, k+"="+*v)
		}
	}
	args := []string{"validate"}
	for i := 0; i+1 < len(s.Command); i++ {
		if s.Command[i] == "--config" {
			args = append(args, "--config", filepath.Join(dir, s.Command[i+1]))
		}
	}
	if len(args) == 1 {
		return []string{"jaeger: command " + strings.Join(s.Command, " ") + " names no --config"}
	}
	return run("jaeger validate", jaeger, args, vars)
}
