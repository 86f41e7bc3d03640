package native_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/lab/native"
)

func TestSubstitute(t *testing.T) {
	got, err := native.Substitute("a ${A} $b ${C} {{ $labels.x }}", map[string]string{"A": "1"})
	if err != nil || got != "a 1 $b ${C} {{ $labels.x }}" {
		t.Fatalf("Substitute = %q, %v: only the listed variables may change", got, err)
	}
	if _, err := native.Substitute("${A}", map[string]string{"A": ""}); err == nil || !strings.Contains(err.Error(), "A") {
		t.Fatalf("an empty value: %v, want an error naming A", err)
	}
}

// Each template's variable list is exactly what the file uses.
func TestTemplatesListTheirVariables(t *testing.T) {
	for _, tm := range native.Templates {
		b, err := os.ReadFile(filepath.Join("../..", tm.Src))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, m := range regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)\}`).FindAllStringSubmatch(string(b), -1) {
			seen[m[1]] = true
		}
		var used []string
		for v := range seen {
			used = append(used, v)
		}
		sort.Strings(used)
		listed := slices.Sorted(slices.Values(tm.Vars))
		if !slices.Equal(used, listed) {
			t.Errorf("%s uses %v, Templates lists %v", tm.Src, used, listed)
		}
	}
}

func TestRenderTheRepositorysTemplates(t *testing.T) {
	for _, short := range []string{"", "5s"} {
		t.Run("KV_ALERT_FOR="+short, func(t *testing.T) {
			dir := t.TempDir()
			s, err := native.Load("../..", []string{"KV_STACK_DIR=" + dir, "KV_NGINX_PORT=18080", "KV_ALERT_FOR=" + short})
			if err != nil {
				t.Fatal(err)
			}
			configs, rules, err := native.Render(s)
			if err != nil {
				t.Fatal(err)
			}
			if len(configs) != len(native.Templates) || len(rules) == 0 {
				t.Fatalf("%d configs, %d rule files", len(configs), len(rules))
			}
			byProgram := map[string]string{}
			for _, c := range configs {
				if strings.Contains(c.Text, "${"+c.Vars[0]+"}") {
					t.Errorf("%s: ${%s} left in", c.Src, c.Vars[0])
				}
				if c.Path != filepath.Join(dir, "config", c.Out) {
					t.Errorf("%s rendered to %s", c.Src, c.Path)
				}
				byProgram[c.Program] = c.Text
			}
			if !strings.Contains(byProgram["nginx"], "listen 127.0.0.1:18080 ssl http2;") {
				t.Error("nginx.conf does not listen on KV_NGINX_PORT")
			}
			// The admin listeners are Prometheus's, never the edge's.
			for _, admin := range []string{"API1_ADMIN_ADDR", "API2_ADMIN_ADDR", "CONSUMER_ADMIN_ADDR"} {
				if addr := s.Get(admin); strings.Contains(byProgram["nginx"], addr) {
					t.Errorf("nginx.conf names %s (%s)", admin, addr)
				}
				if addr := s.Get(admin); !strings.Contains(byProgram["prometheus"], `"`+addr+`"`) {
					t.Errorf("prometheus.yml does not scrape %s (%s)", admin, addr)
				}
			}
			if strings.Contains(byProgram["prometheus"], `"`+s.Addr("KV_API1_PORT")+`"`) {
				t.Error("prometheus.yml scrapes api1's data port, which serves no /metrics")
			}
			forLines := regexp.MustCompile(`(?m)^\s+for:\s*(\S+)`)
			groupWait := regexp.MustCompile(`(?m)^\s+group_wait:\s*(\S+)`)
			for name, text := range rules {
				for _, m := range forLines.FindAllStringSubmatch(text, -1) {
					if short != "" && m[1] != short {
						t.Errorf("%s: for: %s, want %s", name, m[1], short)
					}
				}
			}
			gw := groupWait.FindStringSubmatch(byProgram["alertmanager"])
			if gw == nil || (short != "") != (gw[1] == short) {
				t.Errorf("alertmanager group_wait = %v with KV_ALERT_FOR=%q", gw, short)
			}
			rulesDir := filepath.Join(dir, "config", "rules-short")
			if short == "" {
				rulesDir = filepath.Join(s.Root, "observability", "rules")
			}
			if !strings.Contains(byProgram["prometheus"], rulesDir+"/*.yml") {
				t.Errorf("prometheus.yml does not load its rules from %s", rulesDir)
			}
		})
	}
}

// Prometheus scrapes the backup scheduler only where one runs: a stack
// with engines of its own (KV_ENGINES=private, or the HA topology).
func TestBackupsScrapedOnlyWithPrivateEngines(t *testing.T) {
	for _, c := range []struct {
		environ []string
		want    bool
	}{
		{[]string{"KV_ENGINES=shared"}, false},
		{[]string{"KV_ENGINES=private"}, true},
		{[]string{"KV_TOPOLOGY=ha"}, true},
	} {
		s, err := native.Load("../..", append(c.environ, "KV_STACK_DIR="+t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		configs, _, err := native.Render(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, cfg := range configs {
			if cfg.Program != "prometheus" {
				continue
			}
			got := strings.Contains(cfg.Text, "job_name: backups") && strings.Contains(cfg.Text, `["`+s.Get("BACKUP_ADDR")+`"]`)
			if got != c.want {
				t.Errorf("%v: Prometheus scrapes the backup scheduler: %v, want %v", c.environ, got, c.want)
			}
		}
	}
}
