package native

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// Template is a configuration file the stack renders from the repository:
// each ${VAR} of Vars replaced by its setting, nothing else touched (nginx's
// $variables, Prometheus' {{ $labels }}). docker compose renders the same
// files with the same variables (deploy/composetest checks the lists).
type Template struct {
	Program string   // the process that reads it, reloaded (SIGHUP) when it changes
	Src     string   // in the repository
	Out     string   // file name under the stack's config/
	Vars    []string // the ${VAR}s it uses
}

// Templates are the stack's rendered configurations.
var Templates = []Template{
	{"nginx", "nginx/nginx.conf.template", "nginx.conf",
		[]string{"NGINX_LISTEN", "NGINX_STATUS_LISTEN", "NGINX_TLS_CERT", "NGINX_TLS_KEY", "API1_ADDR", "API2_ADDR", "KV_MAX_BODY_BYTES", "NGINX_RATE_LIMIT", "NGINX_RATE_BURST", "NGINX_WAIT_CONN_LIMIT", "NGINX_TRACE_TRUSTED", "NGINX_ACCESS_LOG", "NGINX_ERROR_LOG"}},
	{"prometheus", "observability/prometheus.yml", "prometheus.yml",
		[]string{"API1_ADMIN_ADDR", "API2_ADMIN_ADDR", "CONSUMER_ADMIN_ADDR", "RABBITMQ_METRICS_ADDR", "PROMETHEUS_ADDR", "ALERTMANAGER_ADDR", "PROMETHEUS_RULES_DIR",
			"MTAIL_ADDR", "NGINX_EXPORTER_ADDR", "POSTGRES_EXPORTER_ADDR", "REDIS_EXPORTER_ADDR", "JAEGER_METRICS_ADDR"}},
	{"alertmanager", "observability/alertmanager.yml", "alertmanager.yml",
		[]string{"ALERT_WEBHOOK_URL"}},
}

// Substitute replaces ${NAME} for each name in vars, and fails when the
// text uses one of them without a value.
func Substitute(text string, vars map[string]string) (string, error) {
	var missing []string
	out := reference.ReplaceAllStringFunc(text, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := vars[name]
		if !ok {
			return ref
		}
		if v == "" {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// ScrapeTarget is one of the targets a template variable of
// prometheus.yml stands for when the topology has several (the HA
// topology's nodes).
type ScrapeTarget struct {
	Addr   string
	Labels []Label
}

// Label is a target's label.
type Label struct{ Name, Value string }

// targetItem is a static_configs item of prometheus.yml whose one target
// is a template variable, with the labels line that may follow it.
var targetItem = regexp.MustCompile(`(?m)^([ \t]*)- targets: \["\$\{([A-Z][A-Z0-9_]*)\}"\]\n(?:[ \t]+labels: \{[^}\n]*\}\n)?`)

// ExpandTargets replaces each static_configs item whose target is a
// variable of groups by one item per target of that group, each with its
// own labels; docker compose, which renders the file with envsubst, keeps
// the one target per job.
func ExpandTargets(text string, groups map[string][]ScrapeTarget) string {
	return targetItem.ReplaceAllStringFunc(text, func(item string) string {
		m := targetItem.FindStringSubmatch(item)
		targets, ok := groups[m[2]]
		if !ok {
			return item
		}
		var b strings.Builder
		for _, t := range targets {
			fmt.Fprintf(&b, "%s- targets: [%q]\n", m[1], t.Addr)
			if len(t.Labels) > 0 {
				pairs := make([]string, len(t.Labels))
				for i, l := range t.Labels {
					pairs[i] = l.Name + ": " + l.Value
				}
				fmt.Fprintf(&b, "%s  labels: { %s }\n", m[1], strings.Join(pairs, ", "))
			}
		}
		return b.String()
	})
}

var (
	alertFor      = regexp.MustCompile(`(?m)^([ \t]+for:).*$`)
	groupInterval = regexp.MustCompile(`(?m)^([ \t]+group_(wait|interval):).*$`)
)

// Rendered is one configuration as the stack writes it.
type Rendered struct {
	Template
	Path string
	Text string
}

// Render produces the configurations of s, without writing them. With
// KV_ALERT_FOR (test only), every alert's `for:` is replaced in a copy of
// the rules (written under config/rules-short, which PROMETHEUS_RULES_DIR
// then names) and so are Alertmanager's group_wait and group_interval, so
// that a test sees an alert fire, arrive and resolve in seconds;
// thresholds and windows stay as they are.
func Render(s *Settings) (configs []Rendered, rules map[string]string, err error) {
	vars := map[string]string{}
	for _, t := range Templates {
		for _, v := range t.Vars {
			vars[v] = s.Get(v)
		}
	}
	short := s.Get("KV_ALERT_FOR")
	rulesDir := vars["PROMETHEUS_RULES_DIR"]
	rules = map[string]string{}
	files, _ := filepath.Glob(filepath.Join(rulesDir, "*.yml"))
	if short != "" {
		vars["PROMETHEUS_RULES_DIR"] = filepath.Join(s.ConfigDir(), "rules-short")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		text := string(b)
		if short != "" {
			text = alertFor.ReplaceAllString(text, "${1} "+short)
		}
		rules[filepath.Base(f)] = text
	}
	for _, t := range Templates {
		b, err := os.ReadFile(filepath.Join(s.Root, t.Src))
		if err != nil {
			return nil, nil, err
		}
		text := string(b)
		if short != "" && t.Program == "alertmanager" {
			text = groupInterval.ReplaceAllString(text, "${1} "+short)
		}
		only := map[string]string{}
		for _, v := range t.Vars {
			only[v] = vars[v]
		}
		if t.Program == "prometheus" && s.HA() {
			groups := haScrapeTargets(s)
			text = ExpandTargets(text, groups) + haPatroniJob(s)
			// What is left of them (the header's list) names every target.
			for name, targets := range groups {
				addrs := make([]string, len(targets))
				for i, tg := range targets {
					addrs[i] = tg.Addr
				}
				only[name] = strings.Join(addrs, " ")
			}
		}
		if text, err = Substitute(text, only); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", t.Src, err)
		}
		if t.Program == "prometheus" && s.Backups() {
			text += backupsJob(s)
		}
		configs = append(configs, Rendered{Template: t, Path: filepath.Join(s.ConfigDir(), t.Out), Text: text})
	}
	return configs, rules, nil
}

// backupsJob is the scrape job of the backup scheduler, which only a
// stack with engines of its own runs (KV_ENGINES=private, or the HA
// topology: its PostgreSQL archives with pgBackRest); appended to scrape_configs, the
// template's last section, so that docker compose's Prometheus, which has
// no such process, does not look for it.
func backupsJob(s *Settings) string {
	return fmt.Sprintf(`
  # Added by the native stack with engines of its own (KV_ENGINES=private,
  # or the HA topology): the pgBackRest backup scheduler (BackupTooOld).
  - job_name: backups
    static_configs:
      - targets: [%q]
`, s.Get("BACKUP_ADDR"))
}

// WriteConfigs renders the configurations into the stack's config/, checks
// each one that changed (nginx -t, promtool, amtool) and reloads the
// running process that reads it (sup may be nil: nothing runs); mtail's
// programs likewise (mtail -compile_only, then a restart).
func WriteConfigs(ctx context.Context, s *Settings, sup *supervisor.Supervisor, log io.Writer) error {
	configs, rules, err := Render(s)
	if err != nil {
		return err
	}
	// The API reads the JWKS of the stack's key at start, as
	// KV_PROCESS_USER; the engines run as their own users.
	if err := reachable(s, log); err != nil {
		return err
	}
	if _, err := SigningKey(s); err != nil {
		return err
	}
	// nginx reads its certificate at start and on a reload: a new one
	// (first start, renewal, a new CA) reloads it as a new config does.
	certRenewed, err := EdgeCerts(s)
	if err != nil {
		return err
	}
	for _, d := range []string{"logs", "nginx", "prometheus", "alertmanager"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := ownFiles(s); err != nil {
		return err
	}
	// The rules Prometheus loads: the repository's, or the shortened copy.
	rulesChanged := false
	if s.Get("KV_ALERT_FOR") != "" {
		dir := filepath.Join(s.ConfigDir(), "rules-short")
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		for name, text := range rules {
			if _, err := supervisor.WriteIfChanged(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				return err
			}
		}
	}
	if rulesChanged, err = supervisor.WriteIfChanged(filepath.Join(s.ConfigDir(), "rules.sum"), []byte(rulesSum(rules)), 0o644); err != nil {
		return err
	}
	for _, c := range configs {
		changed, err := supervisor.WriteIfChanged(c.Path, []byte(c.Text), 0o644)
		if err != nil {
			return err
		}
		if c.Program == "prometheus" {
			changed = changed || rulesChanged
		}
		if c.Program == "nginx" {
			changed = changed || certRenewed
		}
		if !changed {
			continue
		}
		if err := checkConfig(ctx, s, c); err != nil {
			return err
		}
		if sup == nil {
			continue
		}
		if info, err := sup.Process(ctx, c.Program); err == nil && info.State == "RUNNING" {
			if log != nil {
				fmt.Fprintf(log, "==> %s: config changed, reloading\n", c.Program)
			}
			if err := sup.Signal(ctx, c.Program, "HUP"); err != nil {
				return err
			}
		}
	}
	return reloadMtail(ctx, s, sup, log)
}

// MtailProgs is the directory of mtail's programs (the edge's metrics).
const MtailProgs = "observability/mtail"

// reloadMtail restarts a running mtail when its programs changed since the
// last render, once they compile. Not SIGHUP: mtail 3.0.0-rc50 reloads a
// program beside the old one's metrics, and /metrics then fails on every
// series collected twice. A restart resets its counters, which Prometheus'
// rate() takes as any counter reset.
func reloadMtail(ctx context.Context, s *Settings, sup *supervisor.Supervisor, log io.Writer) error {
	dir := filepath.Join(s.Root, MtailProgs)
	files, _ := filepath.Glob(filepath.Join(dir, "*.mtail"))
	progs := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		progs[filepath.Base(f)] = string(b)
	}
	changed, err := supervisor.WriteIfChanged(filepath.Join(s.ConfigDir(), "mtail.sum"), []byte(rulesSum(progs)), 0o644)
	if err != nil || !changed {
		return err
	}
	if _, err := exec.LookPath("mtail"); err != nil {
		return nil // not installed yet: nothing runs it either
	}
	// Port 0: the check must not collide with a running mtail.
	check := exec.CommandContext(ctx, "mtail", "-compile_only", "-progs", dir, "-address", "127.0.0.1", "-port", "0", "-logtostderr")
	if out, err := check.CombinedOutput(); err != nil {
		_ = os.Remove(filepath.Join(s.ConfigDir(), "mtail.sum")) // checked again next time
		return fmt.Errorf("mtail rejects %s: %w\n%s", dir, err, out)
	}
	if sup == nil {
		return nil
	}
	if info, err := sup.Process(ctx, "mtail"); err == nil && info.State == "RUNNING" {
		if log != nil {
			fmt.Fprintf(log, "==> mtail: %s changed, restarting it\n", MtailProgs)
		}
		if err := sup.Stop(ctx, "mtail"); err != nil {
			return err
		}
		return sup.Start(ctx, "mtail", false)
	}
	return nil
}

func rulesSum(rules map[string]string) string {
	names := make([]string, 0, len(rules))
	for n := range rules {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%s\x00", n, rules[n])
	}
	return fmt.Sprintf("%x\n", h.Sum(nil))
}

// checkConfig runs the program's own checker on a rendered file; a
// checker not installed is skipped (promtool and amtool come with the
// packages lab/scripts/services.sh installs).
func checkConfig(ctx context.Context, s *Settings, c Rendered) error {
	var cmd *exec.Cmd
	switch c.Program {
	case "nginx":
		dir := filepath.Join(s.Dir, "nginx")
		cmd = exec.CommandContext(ctx, "nginx", "-q", "-t", "-p", dir+"/", "-c", c.Path, "-e", s.Get("NGINX_ERROR_LOG"),
			"-g", "pid "+filepath.Join(dir, "nginx.pid")+";")
		if err := asProcessUser(s, cmd); err != nil {
			return err
		}
	case "prometheus":
		cmd = exec.CommandContext(ctx, "promtool", "check", "config", c.Path)
	case "alertmanager":
		cmd = exec.CommandContext(ctx, "amtool", "check-config", c.Path)
	}
	if _, err := exec.LookPath(cmd.Path); err != nil && c.Program != "nginx" {
		return nil
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s rejects %s (from %s): %w\n%s", filepath.Base(cmd.Path), c.Path, c.Src, err, out)
	}
	return nil
}
