package k8s

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// minRetentionDays is the shortest window of recovery points the backups
// may keep: a week, so that an accident found after a weekend can still be
// undone.
const minRetentionDays = 7

// A production PostgreSQL (more than one instance) is backed up (issue 21
// §4): its WAL archived by the Barman Cloud Plugin to an ObjectStore of the
// release, and a base backup at least once a day by a ScheduledBackup of
// that Cluster through the same plugin, kept at least a week. Every
// ScheduledBackup and ObjectStore belongs to a Cluster of the release.
func checkBackups(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	stores := map[string]*ObjectStore{}
	for _, os := range m.objectStores {
		stores[os.Name] = os
		if !regexp.MustCompile(`^(s3|gs)://[^/]+|^https://[^/]+`).MatchString(os.Spec.Configuration.DestinationPath) {
			p.add("ObjectStore %s: destinationPath %q is no bucket (s3://, gs:// or https:// for Azure)", os.Name, os.Spec.Configuration.DestinationPath)
		}
		if d, ok := retentionDays(os.Spec.RetentionPolicy); !ok || d < minRetentionDays {
			p.add("ObjectStore %s: retentionPolicy %q, want at least %d days of recovery points", os.Name, os.Spec.RetentionPolicy, minRetentionDays)
		}
	}
	clusters := map[string]bool{}
	used := map[string]bool{}
	for _, pg := range m.postgreses {
		clusters[pg.Name] = true
		var archivers []PostgresPlugin
		for _, pl := range pg.Spec.Plugins {
			if pl.IsWALArchiver != nil && *pl.IsWALArchiver && (pl.Enabled == nil || *pl.Enabled) {
				archivers = append(archivers, pl)
			}
		}
		if pg.Spec.Instances <= 1 && len(archivers) == 0 {
			continue // development: no object store
		}
		if len(archivers) != 1 || archivers[0].Name != barmanCloudPlugin {
			p.add("Cluster %s: want its WAL archived by the Barman Cloud Plugin (%s, isWALArchiver), have %+v", pg.Name, barmanCloudPlugin, pg.Spec.Plugins)
			continue
		}
		store := archivers[0].Parameters["barmanObjectName"]
		if stores[store] == nil {
			p.add("Cluster %s archives to ObjectStore %q, which the release does not make", pg.Name, store)
		}
		used[store] = true
		daily := false
		for _, sb := range m.scheduledBackup {
			if sb.Spec.Cluster.Name != pg.Name || (sb.Spec.Suspend != nil && *sb.Spec.Suspend) {
				continue
			}
			if sb.Spec.Method != "plugin" || sb.Spec.PluginConfiguration == nil || sb.Spec.PluginConfiguration.Name != barmanCloudPlugin {
				p.add("ScheduledBackup %s: method %q through %+v, want the plugin that archives the WAL (%s): a base backup without its WAL restores nothing", sb.Name, sb.Spec.Method, sb.Spec.PluginConfiguration, barmanCloudPlugin)
				continue
			}
			if err := atLeastDaily(sb.Spec.Schedule); err != nil {
				p.add("ScheduledBackup %s: schedule %q: %v", sb.Name, sb.Spec.Schedule, err)
				continue
			}
			daily = true
		}
		if !daily {
			p.add("Cluster %s: no ScheduledBackup takes a base backup of it at least daily through %s", pg.Name, barmanCloudPlugin)
		}
		p = append(p, backupAlerted(m, pg.Name)...)
	}
	for _, sb := range m.scheduledBackup {
		if !clusters[sb.Spec.Cluster.Name] {
			p.add("ScheduledBackup %s backs up Cluster %q, which the release does not make", sb.Name, sb.Spec.Cluster.Name)
		}
	}
	for name := range stores {
		if !used[name] {
			p.add("ObjectStore %s: no Cluster archives to it", name)
		}
	}
	return p
}

// backupAlerted says what is wrong unless an alert of the release ages
// (time() minus) the plugin's newest base backup time of Cluster cluster as the plugin
// reports it through every instance's exporter (CNPG-I metrics: its name,
// "." and "-" as "_", then _last_available_backup_timestamp), under the
// job the PodMonitor of the Cluster's instances gives it.
func backupAlerted(m *manifests, cluster string) problems {
	var p problems
	instance := map[string]string{postgresPodLabel: cluster}
	job := ""
	for _, pm := range m.podMonitors {
		if selects(&pm.Spec.Selector, instance) {
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				if ep.Port != nil && *ep.Port == postgresMetricsPort {
					job = jobOf(ep.RelabelConfigs)
				}
			}
		}
	}
	metric := strings.NewReplacer(".", "_", "-", "_").Replace(barmanCloudPlugin) + "_last_available_backup_timestamp"
	want := fmt.Sprintf("%s{job=%q}", metric, job)
	for _, pr := range m.rules {
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				if e := r.Expr.String(); r.Alert != "" && strings.Contains(e, want) && strings.Contains(e, "time()") {
					return p
				}
			}
		}
	}
	p.add("Cluster %s: no alert compares time() with %s, its newest base backup: a backup that fails or never runs goes unseen", cluster, want)
	return p
}

// retentionDays reads the plugin's retentionPolicy (^[1-9][0-9]*[dwm]$).
func retentionDays(v string) (int, bool) {
	mm := regexp.MustCompile(`^([1-9][0-9]*)([dwm])$`).FindStringSubmatch(v)
	if mm == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(mm[1])
	return n * map[string]int{"d": 1, "w": 7, "m": 30}[mm[2]], true
}

// atLeastDaily accepts a CloudNativePG schedule (robfig/cron with seconds:
// second minute hour day-of-month month day-of-week) that fires every day.
func atLeastDaily(schedule string) error {
	f := strings.Fields(schedule)
	if len(f) != 6 {
		return fmt.Errorf("%d fields, CloudNativePG's cron has six (seconds first)", len(f))
	}
	for i, name := range []string{"second", "minute", "hour"} {
		if !regexp.MustCompile(`^(\*|\*/[0-9]+|[0-9]+([,-][0-9]+)*)$`).MatchString(f[i]) {
			return fmt.Errorf("%s field %q", name, f[i])
		}
	}
	for i, name := range []string{"day-of-month", "month", "day-of-week"} {
		if f[3+i] != "*" && f[3+i] != "?" {
			return fmt.Errorf("%s %q: not every day", name, f[3+i])
		}
	}
	return nil
}

// The restore procedure of docs/KUBERNETES.md (the Cluster between
// <!-- restore-cluster --> and the end of its yaml block) is a Cluster the
// pinned CloudNativePG accepts, CEL rules included, that recovers from the
// chart's ObjectStore and the chart's Cluster's backups (serverName) to a
// targetTime, and archives its own WAL elsewhere than the source's.
func TestRestoreProcedure(t *testing.T) {
	guide := string(readRepo(t, "docs/KUBERNETES.md"))
	_, after, ok := strings.Cut(guide, "<!-- restore-cluster -->")
	if !ok {
		t.Fatal("docs/KUBERNETES.md: no <!-- restore-cluster --> before the restore procedure's Cluster")
	}
	_, block, _ := strings.Cut(after, "```yaml\n")
	block, _, _ = strings.Cut(block, "```")
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(block), &obj); err != nil {
		t.Fatal(err)
	}
	s := crdSchemas(t)[gvkOf(obj)]
	if s == nil {
		t.Fatalf("%s: no CRD serves it", gvkOf(obj))
	}
	// Integers as the API server decodes them.
	j, _ := yaml.YAMLToJSON([]byte(block))
	obj = nil
	if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &obj); err != nil {
		t.Fatal(err)
	}
	for _, e := range validateCustomResource(context.Background(), s, obj) {
		t.Errorf("the restore Cluster: %v", e)
	}
	var c struct {
		Metadata struct{ Name string }
		Spec     struct {
			Bootstrap struct {
				Recovery struct {
					Source         string
					RecoveryTarget struct{ TargetTime string } `json:"recoveryTarget"`
				}
			}
			ExternalClusters []struct {
				Name   string
				Plugin struct {
					Name       string
					Parameters map[string]string
				}
			} `json:"externalClusters"`
			Plugins []PostgresPlugin
		}
	}
	if err := yaml.Unmarshal([]byte(block), &c); err != nil {
		t.Fatal(err)
	}
	m := mustBuild(t, "prod")
	if len(m.postgreses) != 1 || len(m.objectStores) != 1 {
		t.Fatalf("values/prod.yaml: %d Clusters, %d ObjectStores, want one of each", len(m.postgreses), len(m.objectStores))
	}
	src, store := m.postgreses[0].Name, m.objectStores[0].Name
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d(:?\d\d)?)$`).MatchString(c.Spec.Bootstrap.Recovery.RecoveryTarget.TargetTime) {
		t.Errorf("recoveryTarget.targetTime %q: want a timestamp with its zone", c.Spec.Bootstrap.Recovery.RecoveryTarget.TargetTime)
	}
	found := false
	for _, ec := range c.Spec.ExternalClusters {
		if ec.Name != c.Spec.Bootstrap.Recovery.Source {
			continue
		}
		found = true
		if ec.Plugin.Name != barmanCloudPlugin || ec.Plugin.Parameters["barmanObjectName"] != store || ec.Plugin.Parameters["serverName"] != src {
			t.Errorf("recovery source %s: plugin %+v, want %s reading ObjectStore %s, serverName %s", ec.Name, ec.Plugin, barmanCloudPlugin, store, src)
		}
	}
	if !found {
		t.Errorf("bootstrap.recovery.source %q is no externalClusters entry", c.Spec.Bootstrap.Recovery.Source)
	}
	for _, pl := range c.Spec.Plugins {
		server := pl.Parameters["serverName"]
		if server == "" {
			server = c.Metadata.Name
		}
		if pl.Parameters["barmanObjectName"] == store && server == src {
			t.Errorf("the restored Cluster archives into the source's own backups (%s, serverName %s)", store, src)
		}
	}
}
