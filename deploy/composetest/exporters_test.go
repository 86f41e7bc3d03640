package composetest

import (
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/kvstack/kvstack/lab/native"
)

// repoInContainers is where compose mounts the files of the repository an
// exporter reads (mtail's program, the PostgreSQL exporter's queries).
const repoInContainers = "/kvstack"

// Each exporter of the native stack runs in compose with the same flags:
// its command is what lab/native builds for it, given the container's
// address, the repository at /kvstack and the target the container sees.
// That target is the one its neighbour serves (the access log nginx
// writes, in a volume both mount; stub_status on nginx's loopback, in
// nginx's network namespace; the compose PostgreSQL and Redis), and
// Prometheus scrapes it where it listens.
func TestExportersInStep(t *testing.T) {
	p := mustLoad(t)
	s, err := native.Load(root, nil) // stack.env and the defaults, not the developer's environment
	if err != nil {
		t.Fatal(err)
	}
	nginx := service(t, p, "nginx")
	render := service(t, p, "render-config")
	// What each exporter reads, as the containers see it.
	targets := map[native.ExporterKind]string{
		native.Mtail:         env(nginx, "NGINX_ACCESS_LOG"),
		native.NginxExporter: "http://" + env(nginx, "NGINX_STATUS_LISTEN") + "/stub_status",
		// As its own role (TestNoServiceAsSuperuser checks which): the
		// API's host and database.
		native.PostgresExporter: env(service(t, p, "postgres-exporter"), "DATA_SOURCE_NAME"),
		native.RedisExporter:    env(service(t, p, "api1"), "REDIS_ADDR"),
	}
	exporters := native.Exporters(s)
	if len(exporters) != len(targets) {
		t.Fatalf("the native stack has %d exporters; this test knows %d kinds", len(exporters), len(targets))
	}
	for _, e := range exporters {
		t.Run(e.Name, func(t *testing.T) {
			svc := service(t, p, e.Name)
			_, port, _ := net.SplitHostPort(e.Listen)
			want := native.Exporter{Kind: e.Kind, Name: e.Name, Listen: "0.0.0.0:" + port, Target: targets[e.Kind]}
			argv, wantEnv := want.Command(repoInContainers)
			if e.Kind == native.NginxExporter {
				argv = slices.DeleteFunc(argv, isRetryFlag)
			}
			// The image's entrypoint is the program; compose gives the flags.
			if !slices.Equal(svc.Command, argv[1:]) {
				t.Errorf("command\n  %q\nwant lab/native's\n  %q", svc.Command, argv[1:])
			}
			for k, v := range wantEnv {
				if got := env(svc, k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			// Prometheus scrapes it where it listens: by its service name,
			// or nginx's when it lives in nginx's network namespace.
			host := e.Name
			if svc.NetworkMode == "service:nginx" {
				host = "nginx"
			}
			addrVar := strings.ToUpper(strings.ReplaceAll(string(e.Kind), "-", "_")) + "_ADDR"
			if got := env(render, addrVar); got != host+":"+port {
				t.Errorf("render-config: %s = %q, want %s:%s", addrVar, got, host, port)
			}
		})
	}

	// stub_status is on nginx's loopback: only its namespace reaches it.
	if got, want := env(nginx, "NGINX_STATUS_LISTEN"), "127.0.0.1:"+stackEnv(t)["KV_NGINX_STATUS_PORT"]; got != want {
		t.Errorf("nginx: NGINX_STATUS_LISTEN = %q, want %q", got, want)
	}
	if got := service(t, p, "nginx-exporter").NetworkMode; got != "service:nginx" {
		t.Errorf("nginx-exporter: network_mode %q, want service:nginx (stub_status is on nginx's loopback)", got)
	}
	// The access log lives in a volume that nginx writes and mtail reads.
	logDir := targets[native.Mtail][:strings.LastIndex(targets[native.Mtail], "/")]
	if w, r := volumeAt(service(t, p, "nginx"), logDir), volumeAt(service(t, p, "mtail"), logDir); w == nil || r == nil || w.Source != r.Source || w.ReadOnly || !r.ReadOnly {
		t.Errorf("nginx writes %s and mtail reads it: want one named volume at %s, read-write in nginx, read-only in mtail (nginx %+v, mtail %+v)",
			targets[native.Mtail], logDir, w, r)
	}
}

func volumeAt(s types.ServiceConfig, target string) *types.ServiceVolumeConfig {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == target {
			return &v
		}
	}
	return nil
}

// isRetryFlag: the native nginx exporter's start-up retries. Debian 12's
// 0.11 exits when stub_status does not answer as it starts; the 1.x image
// compose runs does not, and has no such flags.
func isRetryFlag(arg string) bool {
	return strings.HasPrefix(arg, "--nginx.retries=") || strings.HasPrefix(arg, "--nginx.retry-interval=")
}

// The exporters' images are releases their projects still support: each is
// the image of a row of deploy/k8s/VERSIONS.md (the chart's table, which
// the chart's exporters follow too), on a line whose support has not ended
// and was checked within six months. The native stack runs Debian 12's
// packages instead (2022 releases, which no image here runs); the series
// the rules and dashboard read are the same in both (VERSIONS.md).
func TestExporterImagesSupported(t *testing.T) {
	rows := exporterRows(t)
	for _, file := range []string{"docker-compose.yml", "docker-compose.ha.yml"} {
		p := mustLoadFile(t, file)
		for _, name := range sorted(p.ServiceNames()) {
			image := service(t, p, name).Image
			component := exporterComponent(image)
			if component == "" {
				continue
			}
			if problem := supported(rows, component, image, time.Now()); problem != "" {
				t.Errorf("%s: %s: %s", file, name, problem)
			}
		}
	}
}

// exporterComponent: the VERSIONS.md component an exporter image is a
// release of, "" for an image that is not an exporter's.
func exporterComponent(image string) string {
	name, _, _ := strings.Cut(image, ":")
	switch path.Base(name) {
	case "postgres-exporter":
		return "postgres_exporter"
	case "redis_exporter":
		return "redis_exporter"
	case "nginx-prometheus-exporter":
		return "nginx-prometheus-exporter"
	}
	return ""
}

// versionRow is a row of deploy/k8s/VERSIONS.md's table.
type versionRow struct {
	component, line, image, ends string
	checked                      time.Time
}

func exporterRows(t *testing.T) []versionRow {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", "VERSIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []versionRow
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 6 {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		checked, err := time.Parse(time.DateOnly, cells[4])
		if err != nil { // the header and its rule
			continue
		}
		rows = append(rows, versionRow{component: cells[0], line: cells[1], image: cells[2], ends: cells[3], checked: checked})
	}
	if len(rows) == 0 {
		t.Fatal("deploy/k8s/VERSIONS.md: no row")
	}
	return rows
}

// supported: "" when image is the pinned image of a row of component's
// that is still supported at now, or else why not.
func supported(rows []versionRow, component, image string, now time.Time) string {
	for _, r := range rows {
		if r.component != component || r.image != image {
			continue
		}
		if end, err := time.Parse(time.DateOnly, r.ends); err == nil {
			if now.After(end) {
				return fmt.Sprintf("%s %s lost support on %s", component, r.line, r.ends)
			}
			return ""
		}
		if now.Sub(r.checked) > 183*24*time.Hour {
			return fmt.Sprintf("%s %s is supported %q, last checked %s: check again and update VERSIONS.md", component, r.line, r.ends, r.checked.Format(time.DateOnly))
		}
		return ""
	}
	return fmt.Sprintf("image %s is no row of deploy/k8s/VERSIONS.md: a release its project no longer supports, or one nobody looked up", image)
}

// The 2022 releases (Debian 12's, which compose ran until December 2026)
// fail; so does a row once its check is stale.
func TestExporterImagesSupportedCatches(t *testing.T) {
	rows := exporterRows(t)
	now := time.Now()
	for _, image := range []string{
		"prometheuscommunity/postgres-exporter:v0.11.1",
		"oliver006/redis_exporter:v1.45.0",
		"nginx/nginx-prometheus-exporter:0.11.0",
	} {
		if supported(rows, exporterComponent(image), image, now) == "" {
			t.Errorf("%s passes as supported", image)
		}
	}
	for _, r := range rows {
		if exporterComponent(r.image) == "" {
			continue
		}
		if _, err := time.Parse(time.DateOnly, r.ends); err == nil {
			continue
		}
		if supported(rows, r.component, r.image, r.checked.Add(200*24*time.Hour)) == "" {
			t.Errorf("%s: a check 200 days old passes", r.image)
		}
	}
}
