package k8s

import (
	"maps"
	"regexp"
	"slices"
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

// In Kubernetes, ingress-nginx's controller metrics become the edge's
// series, with the names and labels the SLOs, the alerts and the dashboard
// read natively from mtail and the nginx exporter; the controller's other
// series, and other namespaces' Ingresses, are dropped.
func TestEdgeSeriesFromIngressNginx(t *testing.T) {
	m := mustBuild(t, "prod")
	endpoints := map[string][]monitoringv1.RelabelConfig{} // job -> metric relabelings
	for _, pm := range m.podMonitors {
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if sel := pm.Spec.Selector; selects(&sel, ingressController.labels) {
				endpoints[jobOf(ep.RelabelConfigs)] = ep.MetricRelabelConfigs
			}
		}
	}
	if len(endpoints) != 2 || endpoints["mtail"] == nil || endpoints["nginx-exporter"] == nil {
		t.Fatalf("the ingress-nginx controller is scraped as jobs %v, want mtail and nginx-exporter", slices.Sorted(maps.Keys(endpoints)))
	}
	// A series of the controller, as Prometheus sees it after the scrape:
	// its own namespace label kept as exported_namespace.
	controller := func(name string, extra map[string]string) map[string]string {
		s := map[string]string{"__name__": name, "controller_class": "k8s.io/ingress-nginx",
			"controller_namespace": "ingress-nginx", "controller_pod": "ingress-nginx-controller-7d9f-x2"}
		maps.Copy(s, extra)
		return s
	}
	request := func(name, ns, path, method, status string, extra ...string) map[string]string {
		s := controller(name, map[string]string{"exported_namespace": ns, "ingress": "kvstack-api", "service": "kvstack-api",
			"host": "kv.example.com", "canary": "", "path": path, "method": method, "status": status})
		for i := 0; i+1 < len(extra); i += 2 {
			s[extra[i]] = extra[i+1]
		}
		return s
	}
	edge := func(name, route, method, class, code string, extra ...string) map[string]string {
		s := map[string]string{"__name__": name, "route": route, "method": method, "status_class": class, "code": code}
		for i := 0; i+1 < len(extra); i += 2 {
			s[extra[i]] = extra[i+1]
		}
		return s
	}
	for _, c := range []struct {
		name, job string
		in, want  map[string]string // want nil: dropped
	}{
		{"a request", "mtail", request("nginx_ingress_controller_requests", "kvstack", "/api", "GET", "502"),
			edge("kvstack_edge_http_requests_total", "/api", "GET", "5xx", "502")},
		{"a write", "mtail", request("nginx_ingress_controller_requests", "kvstack", "/api", "PUT", "202"),
			edge("kvstack_edge_http_requests_total", "/api", "PUT", "2xx", "202")},
		{"a made-up method", "mtail", request("nginx_ingress_controller_requests", "kvstack", "/api", "FROB", "405"),
			edge("kvstack_edge_http_requests_total", "/api", "other", "4xx", "405")},
		{"the read-latency SLO's bucket", "mtail",
			request("nginx_ingress_controller_request_duration_seconds_bucket", "kvstack", "/api", "GET", "200", "le", "0.25"),
			edge("kvstack_edge_http_request_duration_seconds_bucket", "/api", "GET", "2xx", "200", "le", "0.25")},
		{"a latency count", "mtail", request("nginx_ingress_controller_request_duration_seconds_count", "kvstack", "/api/all", "GET", "200"),
			edge("kvstack_edge_http_request_duration_seconds_count", "/api/all", "GET", "2xx", "200")},
		{"another namespace's Ingress", "mtail", request("nginx_ingress_controller_requests", "shop", "/cart", "GET", "200"), nil},
		{"the controller's own figures", "mtail", controller("nginx_ingress_controller_config_hash", nil), nil},
		{"connections, for the other job", "mtail", controller("nginx_ingress_controller_nginx_process_connections", map[string]string{"state": "active"}), nil},
		{"active connections", "nginx-exporter", controller("nginx_ingress_controller_nginx_process_connections", map[string]string{"state": "active"}),
			map[string]string{"__name__": "nginx_connections_active"}},
		{"waiting connections", "nginx-exporter", controller("nginx_ingress_controller_nginx_process_connections", map[string]string{"state": "waiting"}),
			map[string]string{"__name__": "nginx_connections_waiting"}},
		{"accepted connections", "nginx-exporter", controller("nginx_ingress_controller_nginx_process_connections_total", map[string]string{"state": "accepted"}),
			map[string]string{"__name__": "nginx_connections_accepted"}},
		{"nginx's requests", "nginx-exporter", controller("nginx_ingress_controller_nginx_process_requests_total", nil),
			map[string]string{"__name__": "nginx_http_requests_total"}},
		{"requests, for the other job", "nginx-exporter", request("nginx_ingress_controller_requests", "kvstack", "/api", "GET", "200"), nil},
	} {
		t.Run(c.job+"/"+c.name, func(t *testing.T) {
			got, kept := relabel(t, endpoints[c.job], c.in)
			switch {
			case c.want == nil && kept:
				t.Errorf("kept as %v, want it dropped", got)
			case c.want != nil && !kept:
				t.Errorf("dropped, want %v", c.want)
			case c.want != nil && !maps.Equal(got, c.want):
				t.Errorf("got  %v\nwant %v", got, c.want)
			}
		})
	}
}
