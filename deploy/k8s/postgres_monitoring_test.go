package k8s

import (
	"maps"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// pgQuery is one query of a postgres_exporter (or CloudNativePG) queries
// file. master (primary in CloudNativePG) runs it on the primary only.
type pgQuery struct {
	Query   string                `json:"query"`
	Master  bool                  `json:"master,omitempty"`
	Primary bool                  `json:"primary,omitempty"`
	Metrics []map[string]pgMetric `json:"metrics"`
}

type pgMetric struct {
	Usage       string `json:"usage"`
	Description string `json:"description"`
}

// instanceQueries are the queries of observability/postgres-exporter/
// queries.yml that tell one server's own side of replication, which the
// exporter on the primary cannot see of a standby: CloudNativePG's
// exporter runs them on every instance.
var instanceQueries = []string{"pg_recovery"}

// cnpgQueries is the queries file of CloudNativePG's exporter: those
// queries, on every instance (master dropped).
func cnpgQueries(t testing.TB) map[string]pgQuery {
	t.Helper()
	var all map[string]pgQuery
	if err := yaml.UnmarshalStrict(readRepo(t, "observability/postgres-exporter/queries.yml"), &all); err != nil {
		t.Fatalf("observability/postgres-exporter/queries.yml: %v", err)
	}
	out := map[string]pgQuery{}
	for _, name := range instanceQueries {
		q, ok := all[name]
		if !ok {
			t.Fatalf("observability/postgres-exporter/queries.yml has no %s", name)
		}
		q.Master, q.Primary = false, false
		out[name] = q
	}
	return out
}

// checkPostgresMonitoring: the exporter reads PostgreSQL as a role in
// pg_monitor (without it pg_stat_replication hides the lag of the
// standbys' sessions, which then reads 0, so PostgresStandbyLagging cannot
// fire); every instance's own exporter (CloudNativePG's, port metrics) is
// scraped, with the queries that say whether a standby streams
// (PostgresStandbyNotStreaming reads them of each standby), renamed from
// cnpg_<query>_<column> to the exporter's <query>_<column> under the
// exporter's job.
func checkPostgresMonitoring(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	exp := m.deployment("kvstack-postgres-exporter")
	for _, pg := range m.postgreses {
		monitors := map[string]bool{} // Secrets of login roles in pg_monitor
		if pg.Spec.Managed != nil {
			for _, r := range pg.Spec.Managed.Roles {
				if r.Login && slices.Contains(r.InRoles, "pg_monitor") && r.PasswordSecret != nil && r.Ensure != "absent" {
					monitors[r.PasswordSecret.Name] = true
				}
			}
		}
		if exp == nil {
			p.add("no Deployment kvstack-postgres-exporter")
		} else {
			c := &exp.Spec.Template.Spec.Containers[0]
			fromSecret := func(name string) string {
				e := envVar(c, name)
				if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					return ""
				}
				return e.ValueFrom.SecretKeyRef.Name
			}
			us, ps := fromSecret("DATA_SOURCE_USER"), fromSecret("DATA_SOURCE_PASS")
			if us == "" || us != ps || !monitors[us] || envVar(c, "DATA_SOURCE_NAME") != nil {
				p.add("the PostgreSQL exporter's DATA_SOURCE_USER and DATA_SOURCE_PASS must come from the Secret of a login role of Cluster %s in pg_monitor (%v), not from the app's", pg.Name, slices.Sorted(maps.Keys(monitors)))
			}
		}

		// CloudNativePG's exporter: the instance queries, on every instance.
		var cm string
		if pg.Spec.Monitoring != nil {
			for _, sel := range pg.Spec.Monitoring.CustomQueriesConfigMap {
				c := m.configMap(sel.Name)
				if c == nil {
					p.add("Cluster %s: customQueriesConfigMap %s is no ConfigMap of the build", pg.Name, sel.Name)
					continue
				}
				var got map[string]pgQuery
				if err := yaml.UnmarshalStrict([]byte(c.Data[sel.Key]), &got); err != nil {
					p.add("ConfigMap %s key %s: %v", c.Name, sel.Key, err)
					continue
				}
				cm = c.Name
				for name, want := range cnpgQueries(t) {
					if g, ok := got[name]; !ok || g.Query != want.Query || g.Master || g.Primary {
						p.add("ConfigMap %s: query %s must be observability/postgres-exporter/queries.yml's, run on every instance (no master, no primary)", c.Name, name)
					}
				}
			}
		}
		if cm == "" {
			p.add("Cluster %s: no customQueriesConfigMap with %v for CloudNativePG's exporter", pg.Name, instanceQueries)
		}
		instance := pod{ns: m.namespace(), labels: map[string]string{postgresPodLabel: pg.Name}, ports: map[string]int32{postgresMetricsPort: postgresMetricsNum}}
		scraped := false
		for _, pm := range m.podMonitors {
			if !selects(&pm.Spec.Selector, instance.labels) {
				continue
			}
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				if ep.Port == nil || *ep.Port != postgresMetricsPort {
					continue
				}
				scraped = true
				if jobOf(ep.RelabelConfigs) != "postgres-exporter" {
					p.add("PodMonitor %s: CloudNativePG's exporter scraped as job %q, want postgres-exporter (the rules' job)", pm.Name, jobOf(ep.RelabelConfigs))
				}
				for name := range cnpgQueries(t) {
					series := map[string]string{"__name__": "cnpg_" + name + "_is_standby"}
					out, kept := relabel(t, ep.MetricRelabelConfigs, series)
					if !kept || out["__name__"] != name+"_is_standby" {
						p.add("PodMonitor %s: cnpg_%s_is_standby becomes %v, want %s_is_standby", pm.Name, name, out, name)
					}
				}
			}
		}
		if !scraped {
			p.add("no PodMonitor scrapes CloudNativePG's exporter (port %s) on the instances of Cluster %s", postgresMetricsPort, pg.Name)
		}
	}
	return p
}
