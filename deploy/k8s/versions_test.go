package k8s

import (
	"os"
	"strings"
	"testing"
	"time"
)

// supportRow is one row of VERSIONS.md.
type supportRow struct {
	component, line, image string
	ends                   time.Time // zero when the line has no published date
	endsText               string
	checked                time.Time
}

// recheckAfter is how long a line without a published support end stays
// trusted after its last check.
const recheckAfter = 183 * 24 * time.Hour

func supportTable(t testing.TB) []supportRow {
	t.Helper()
	data, err := os.ReadFile("VERSIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []supportRow
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 6 || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") || strings.TrimSpace(cells[0]) == "Component" {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		r := supportRow{component: cells[0], line: cells[1], image: cells[2], endsText: cells[3]}
		if d, err := time.Parse(time.DateOnly, cells[3]); err == nil {
			r.ends = d
		}
		if r.checked, err = time.Parse(time.DateOnly, cells[4]); err != nil {
			t.Fatalf("VERSIONS.md: %s %s: checked %q is no date", r.component, r.line, cells[4])
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatal("VERSIONS.md: no row")
	}
	return rows
}

// engineImages are the build's engine and exporter images by component.
func (m *manifests) engineImages() []struct{ what, component, image string } {
	var out []struct{ what, component, image string }
	add := func(what, component, image string) {
		out = append(out, struct{ what, component, image string }{what, component, image})
	}
	for _, r := range m.rabbitmqs {
		add("RabbitmqCluster "+r.Name, "RabbitMQ", r.Spec.Image)
	}
	for _, pg := range m.postgreses {
		add("Cluster "+pg.Name, "PostgreSQL", pg.Spec.ImageName)
	}
	for _, r := range m.redises {
		add("Redis "+r.Name, "Redis", r.Spec.KubernetesConfig.Image)
	}
	for _, r := range m.redisClusters {
		add("RedisCluster "+r.Name, "Redis", r.Spec.KubernetesConfig.Image)
	}
	// The exporters beside them.
	if d := m.deployment("kvstack-postgres-exporter"); d != nil {
		add("Deployment kvstack-postgres-exporter", "postgres_exporter", d.Spec.Template.Spec.Containers[0].Image)
	}
	for _, r := range m.redises {
		if e := r.Spec.RedisExporter; e != nil {
			add("Redis "+r.Name+" exporter", "redis_exporter", e.Image)
		}
	}
	for _, r := range m.redisClusters {
		if e := r.Spec.RedisExporter; e != nil {
			add("RedisCluster "+r.Name+" exporter", "redis_exporter", e.Image)
		}
	}
	return out
}

// lineParts: PostgreSQL names a major by one number, the others (0.20,
// 1.97 for the exporters) by two.
var lineParts = map[string]int{"PostgreSQL": 1, "RabbitMQ": 2, "Redis": 2, "postgres_exporter": 2, "redis_exporter": 2}

// checkVersions: every engine and exporter runs the image of a row of VERSIONS.md,
// on a line still supported today.
func checkVersions(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	rows := supportTable(t)
	now := time.Now()
	for _, e := range m.engineImages() {
		_, tag := splitImage(e.image)
		line := versionParts(tag, lineParts[e.component])
		var row *supportRow
		for i := range rows {
			if rows[i].component == e.component && rows[i].line == line {
				row = &rows[i]
			}
		}
		switch {
		case row == nil:
			p.add("%s runs %s %s (%s), a line VERSIONS.md does not list as supported", e.what, e.component, line, e.image)
		case row.image != e.image:
			p.add("%s runs %s, VERSIONS.md pins %s", e.what, e.image, row.image)
		case !row.ends.IsZero() && now.After(row.ends):
			p.add("%s: %s %s lost support on %s", e.what, e.component, line, row.endsText)
		case row.ends.IsZero() && now.Sub(row.checked) > recheckAfter:
			p.add("%s: %s %s is supported %q, last checked %s: check again and update VERSIONS.md", e.what, e.component, line, row.endsText, row.checked.Format(time.DateOnly))
		}
	}
	return p
}
