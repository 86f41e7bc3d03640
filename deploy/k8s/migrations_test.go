package k8s

import (
	"slices"
	"strings"
	"testing"
)

// checkMigrations: the schema and the queues are migrated by one Job of
// /kvstack/migrate that Helm runs before every upgrade, and on the first
// install before the rest when both databases are external, after it when
// the release makes one of them (before, it does not exist); it reads the
// binaries' own database and broker, and no Deployment migrates too.
func checkMigrations(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	var jobs []kvContainer
	for _, k := range m.kvContainers() {
		if k.bin == "migrate" {
			if m.job(k.owner) == nil {
				p.add("%s migrates in a Deployment: the Job does it", k)
			}
			jobs = append(jobs, k)
		}
	}
	if len(jobs) != 1 {
		p.add("want one Job running /kvstack/migrate, have %d", len(jobs))
		return p
	}
	j := m.job(jobs[0].owner)
	events := strings.Split(j.Annotations["helm.sh/hook"], ",")
	slices.Sort(events)
	_, pgExt := m.external["postgresql"]
	_, mqExt := m.external["rabbitmq"]
	want := []string{"post-install", "pre-upgrade"}
	if pgExt && mqExt {
		want = []string{"pre-install", "pre-upgrade"}
	}
	if !slices.Equal(events, want) {
		p.add("Job %s: hooks %v, want %v", j.Name, events, want)
	}
	// PostgreSQL as the database's owner when the operator makes it (the
	// API has a role of its own: checkPrivilege), else as the API.
	for _, pg := range m.postgreses {
		if e := envVar(jobs[0].c, "DATABASE_URL"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
			e.ValueFrom.SecretKeyRef.Name != pg.Name+"-app" || e.ValueFrom.SecretKeyRef.Key != postgresSecretKey {
			p.add("Job %s: DATABASE_URL is not the owner's of Cluster %s (Secret %s-app, key %s)", j.Name, pg.Name, pg.Name, postgresSecretKey)
		}
	}
	// RabbitMQ as a user of its own, which may declare the queues (the
	// API's and the consumers' users may not): checkPrivilege.
	var names []string
	if len(m.postgreses) == 0 {
		names = append(names, "DATABASE_URL")
	}
	if len(m.rabbitmqs) == 0 {
		names = append(names, "RABBITMQ_URL")
	}
	for _, name := range names {
		got, api := envVar(jobs[0].c, name), m.mainContainer("api")
		if api == nil || got == nil || got.ValueFrom == nil || envVar(api.c, name) == nil || got.ValueFrom.SecretKeyRef == nil ||
			*got.ValueFrom.SecretKeyRef != *envVar(api.c, name).ValueFrom.SecretKeyRef {
			p.add("Job %s: %s is not the API's", j.Name, name)
		}
	}
	return p
}
