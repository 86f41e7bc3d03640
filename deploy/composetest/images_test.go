package composetest

import (
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// imageBinaries: the programs each pinned image is known to contain, for the
// healthchecks and entrypoints that run them. With no registry here the
// images cannot be opened, so each fact comes from the image's own build
// file, named beside it. Images are pinned by tag in docker-compose.yml, so
// a fact stays true until someone changes the tag, and then this test fails
// ("not in imageBinaries") until the new image is looked up. A bare name is
// found on the image's PATH; the kvstack image is checked against our
// Dockerfile instead (kvstackImage).
var imageBinaries = map[string][]string{
	// docker-library/postgres 16/alpine*/Dockerfile: PostgreSQL built from
	// source with `make install-world-bin` into /usr/local, clients
	// included (pg_basebackup among them), FROM alpine (busybox sh), and
	// its docker-entrypoint.sh in /usr/local/bin.
	"postgres:16.10-alpine": {"postgres", "pg_isready", "psql", "pg_basebackup", "docker-entrypoint.sh", "sh", "/bin/sh", "install"},
	// deploy/compose-ha/patroni.Dockerfile, built here: FROM
	// docker-library/postgres 16/bookworm/Dockerfile (PostgreSQL from the
	// PostgreSQL project's Debian packages, its bin directory on PATH; gosu
	// in /usr/local/bin; Debian's sh, install), with Debian 12's patroni
	// (/usr/bin/patroni, patronictl, python3) and etcd-server (/usr/bin/etcd).
	"kvstack-patroni:local": {"postgres", "pg_isready", "psql", "pg_basebackup", "pg_rewind", "gosu", "sh", "/bin/sh", "install",
		"patroni", "patronictl", "python3", "etcd"},
	// docker-library/redis 7.*/alpine/Dockerfile: `make install` puts
	// redis-server and redis-cli in /usr/local/bin; FROM alpine, whose base
	// holds busybox (sh, awk, grep, install) and musl-utils (getent); its
	// docker-entrypoint.sh in /usr/local/bin.
	"redis:7.4.6-alpine": {"redis-server", "redis-cli", "sh", "/bin/sh", "awk", "grep", "getent", "install", "docker-entrypoint.sh"},
	// docker-library/rabbitmq 4.3/alpine/Dockerfile:
	// PATH=$RABBITMQ_HOME/sbin, the generic-unix release's scripts; FROM
	// alpine (busybox: sh, install), its docker-entrypoint.sh in
	// /usr/local/bin.
	"rabbitmq:4.3.4-management-alpine": {"rabbitmq-server", "rabbitmqctl", "rabbitmq-diagnostics", "sh", "/bin/sh", "install", "docker-entrypoint.sh"},
	// nginx/docker-nginx mainline/alpine-slim/Dockerfile: FROM alpine
	// (busybox: sh, wget, stat, mv, kill), `apk add gettext-envsubst` for the
	// templates;
	// mainline/alpine adds curl.
	"nginx:1.27.5-alpine": {"nginx", "sh", "/bin/sh", "wget", "envsubst", "curl", "stat", "mv", "kill"},
	// prometheus/prometheus Dockerfile: FROM quay.io/prometheus/busybox.
	"prom/prometheus:v2.53.4": {"prometheus", "promtool", "sh", "wget"},
	// prometheus/alertmanager Dockerfile at v0.27.0: FROM
	// quay.io/prometheus/busybox (later releases moved to distroless, with
	// no wget: one reason the tag is pinned).
	"prom/alertmanager:v0.27.0": {"alertmanager", "amtool", "sh", "wget"},
	// jaegertracing/jaeger v2.13.0 cmd/jaeger/Dockerfile FROM the base image
	// of scripts/build/docker/base/Dockerfile: alpine 3.22 (busybox wget).
	"jaegertracing/jaeger:2.13.0": {"wget"},
	// grafana/grafana Dockerfile: the default (non -ubuntu) image is FROM
	// alpine, busybox wget included.
	"grafana/grafana:11.6.0": {"sh", "wget"},
	// google/mtail v3.0.9 .goreleaser.yml builds ghcr.io/google/mtail:3.0.9
	// from Dockerfile.goreleaser: FROM scratch, COPY mtail /mtail.
	"ghcr.io/google/mtail:3.0.9": {"/mtail"},
	// nginx/nginx-prometheus-exporter v1.5.3 build/Dockerfile, target
	// goreleaser: FROM scratch, the binary in /usr/bin, CA certificates,
	// user 1001.
	"nginx/nginx-prometheus-exporter:1.5.3": {"/usr/bin/nginx-prometheus-exporter"},
	// prometheus-community/postgres_exporter v0.20.1 Dockerfile: FROM
	// quay.io/prometheus/busybox, /bin/postgres_exporter, user nobody.
	"prometheuscommunity/postgres-exporter:v0.20.1": {"/bin/postgres_exporter", "sh", "wget"},
	// oliver006/redis_exporter v1.97.0 Dockerfile, target scratch-release
	// (the tag without -alpine): /redis_exporter only, user 59000.
	"oliver006/redis_exporter:v1.97.0": {"/redis_exporter"},
}

// pathDirs are where a bare name is looked up.
var pathDirs = []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}

// has reports whether the program prog (a bare name, looked up on PATH, or
// a path) is among bins (bare names on PATH, or paths).
func has(bins []string, prog string) bool {
	for _, b := range bins {
		switch {
		case b == prog:
			return true
		case !strings.Contains(b, "/") && path.Base(prog) == b && isIn(path.Dir(prog), pathDirs):
			return true
		case strings.Contains(b, "/") && !strings.Contains(prog, "/") && path.Base(b) == prog && isIn(path.Dir(b), pathDirs):
			return true
		}
	}
	return false
}

func isIn(s string, list []string) bool {
	for _, l := range list {
		if s == l {
			return true
		}
	}
	return false
}

// checkProbeBinaries: every healthcheck, entrypoint and (for the image we
// build, which has no entrypoint) command runs a program its image has.
func checkProbeBinaries(t *testing.T, tr tree) []string {
	p := tr.project(t)
	ours := kvstackImage(t, tr)
	var problems []string
	for _, name := range sorted(p.ServiceNames()) {
		s := service(t, p, name)
		bins, known := imageBinaries[s.Image]
		if s.Image == kvstackImageName {
			bins, known = ours, true
		}
		if !known {
			problems = append(problems, name+": image "+s.Image+" is not in imageBinaries: look up what it contains")
			continue
		}
		runs := map[string]string{} // program -> what runs it
		if hc := s.HealthCheck; hc != nil && len(hc.Test) > 1 {
			switch hc.Test[0] {
			case "CMD":
				runs[hc.Test[1]] = "healthcheck"
			case "CMD-SHELL":
				runs["/bin/sh"] = "healthcheck"
				runs[strings.Fields(hc.Test[1])[0]] = "healthcheck"
			}
		}
		if len(s.Entrypoint) > 0 {
			runs[s.Entrypoint[0]] = "entrypoint"
			// deploy/compose/engine-files.sh USER PROGRAM...: it runs
			// install, then PROGRAM (the image's own entrypoint).
			if len(s.Entrypoint) > 3 && strings.HasSuffix(s.Entrypoint[1], "/engine-files.sh") {
				runs["install"] = "engine-files.sh"
				runs[s.Entrypoint[3]] = "engine-files.sh"
			}
		} else if s.Image == kvstackImageName && len(s.Command) > 0 {
			runs[s.Command[0]] = "command"
		}
		for prog, what := range runs {
			if !has(bins, prog) {
				problems = append(problems, name+": "+what+" runs "+prog+", which image "+s.Image+" does not contain")
			}
		}
	}
	return problems
}

// kvstackImage lists the programs of the image our Dockerfile builds: what
// its final stage copies out of the Go build (`go build -o DIR/ ./pkg…`
// then `COPY --from=STAGE DIR/ DEST/`). The final stage's base must hold
// nothing itself: distroless static or scratch (no shell, no tools).
func kvstackImage(t *testing.T, tr tree) []string {
	df := strings.ReplaceAll(string(tr.read(t, "Dockerfile")), "\\\n", " ")
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatchIndex(df, -1)
	if len(froms) == 0 {
		t.Fatal("Dockerfile has no FROM")
	}
	last := froms[len(froms)-1]
	base := df[last[2]:last[3]]
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Fatalf("final stage FROM %s: kvstackImage knows only distroless static and scratch", base)
	}
	built := map[string][]string{} // output dir -> packages
	for _, m := range regexp.MustCompile(`go build[^\n]*?-o\s+(\S+/)((?:\s+\./\S+)+)`).FindAllStringSubmatch(df[:last[0]], -1) {
		built[m[1]] = append(built[m[1]], strings.Fields(m[2])...)
	}
	var bins []string
	for _, m := range regexp.MustCompile(`(?m)^COPY\s+--from=\S+\s+(\S+/)\s+(\S+/)`).FindAllStringSubmatch(df[last[0]:], -1) {
		for _, pkg := range built[m[1]] {
			bins = append(bins, m[2]+path.Base(pkg))
		}
	}
	return bins
}

func TestKvstackImageFromDockerfile(t *testing.T) {
	got := kvstackImage(t, tree{})
	want := []string{"/kvstack/api", "/kvstack/consumer", "/kvstack/migrate", "/kvstack/healthcheck"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the image holds %v, want %v", got, want)
	}
}

// checkBuilderTag: the official Go images set GOTOOLCHAIN=local, so a
// builder older than go.mod's go directive refuses the module, and a
// floating tag (1.26-alpine) may be an older one cached on the host.
func checkBuilderTag(t *testing.T, tr tree) []string {
	m := regexp.MustCompile(`(?m)^go\s+(\S+)`).FindSubmatch(tr.read(t, "go.mod"))
	if m == nil {
		return []string{"go.mod has no go directive"}
	}
	want := string(m[1])
	tags := regexp.MustCompile(`(?m)^FROM\s+(?:--platform=\S+\s+)?golang:(\S+)`).FindAllSubmatch(tr.read(t, "Dockerfile"), -1)
	if len(tags) == 0 {
		return []string{"Dockerfile has no golang builder stage"}
	}
	var problems []string
	for _, tag := range tags {
		version, _, _ := strings.Cut(string(tag[1]), "-")
		got, ok := parseVersion(version)
		switch {
		case !ok || len(got) != 3:
			problems = append(problems, "Dockerfile: golang:"+string(tag[1])+" floats: pin the patch release, go.mod says go "+want)
		case compareVersions(got, mustVersion(t, want)) < 0:
			problems = append(problems, "Dockerfile: golang:"+string(tag[1])+" is older than go.mod's go "+want+", and GOTOOLCHAIN=local refuses to build")
		}
	}
	return problems
}

func parseVersion(s string) ([]int, bool) {
	var v []int
	for _, f := range strings.Split(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, false
		}
		v = append(v, n)
	}
	return v, len(v) >= 2
}

func mustVersion(t *testing.T, s string) []int {
	v, ok := parseVersion(s)
	if !ok {
		t.Fatalf("go.mod: go %s is not a version", s)
	}
	return v
}

// compareVersions compares 1.26 as 1.26.0.
func compareVersions(a, b []int) int {
	for i := range max(len(a), len(b)) {
		x, y := 0, 0
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x - y
		}
	}
	return 0
}
