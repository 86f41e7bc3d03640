package k8s

import (
	"maps"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// relabel applies metric relabelings to one series as Prometheus does
// (replace, keep, drop, labeldrop: the actions kvstack uses); ok is false
// when the series is dropped.
func relabel(t testing.TB, cfgs []monitoringv1.RelabelConfig, series map[string]string) (out map[string]string, ok bool) {
	t.Helper()
	out = maps.Clone(series)
	for _, c := range cfgs {
		regex := c.Regex
		if regex == "" && c.Action != "labeldrop" {
			regex = "(.*)"
		}
		re := regexp.MustCompile("^(?:" + regex + ")$")
		sep := ";"
		if c.Separator != nil {
			sep = *c.Separator
		}
		var vals []string
		for _, l := range c.SourceLabels {
			vals = append(vals, out[string(l)])
		}
		val := strings.Join(vals, sep)
		switch strings.ToLower(c.Action) {
		case "", "replace":
			m := re.FindStringSubmatchIndex(val)
			if m == nil {
				continue
			}
			repl := "$1"
			if c.Replacement != nil {
				repl = *c.Replacement
			}
			if v := string(re.ExpandString(nil, repl, val, m)); v == "" {
				delete(out, c.TargetLabel)
			} else {
				out[c.TargetLabel] = v
			}
		case "keep":
			if !re.MatchString(val) {
				return nil, false
			}
		case "drop":
			if re.MatchString(val) {
				return nil, false
			}
		case "labeldrop":
			for name := range out {
				if re.MatchString(name) {
					delete(out, name)
				}
			}
		default:
			t.Fatalf("relabel action %q: not one this test knows", c.Action)
		}
	}
	return out, true
}
