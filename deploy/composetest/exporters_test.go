package composetest

import (
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

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

// The exporters' images are the releases of the Debian packages the native
// stack runs: the dashboards, rules and `go test ./observability` know
// those releases' series. mtail is the exception: Debian's 3.0.0-rc50 has
// no image (ghcr.io/google/mtail begins at 3.0.0), so compose runs a 3.0
// release, with the same program language.
func TestExporterImagesMatchTheDebianPackages(t *testing.T) {
	p := mustLoad(t)
	packages := map[string]string{
		"nginx-exporter":    "prometheus-nginx-exporter",
		"postgres-exporter": "prometheus-postgres-exporter",
		"redis-exporter":    "prometheus-redis-exporter",
		"mtail":             "mtail",
	}
	for svcName, pkg := range packages {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
		if err != nil {
			t.Errorf("%s: dpkg-query %s: %v (make setup-all installs it)", svcName, pkg, err)
			continue
		}
		// Debian's 0.11.1-3+b5, 1:1.2-1 → 0.11.1, 1.2; rc50's ~ → -.
		debian := regexp.MustCompile(`^(?:\d+:)?([^-]+)`).FindStringSubmatch(string(out))[1]
		debian = strings.ReplaceAll(debian, "~", "-")
		image := service(t, p, svcName).Image
		tag := strings.TrimPrefix(image[strings.LastIndex(image, ":")+1:], "v")
		switch {
		case svcName == "mtail":
			if !strings.HasPrefix(tag, "3.0.") || !strings.HasPrefix(debian, "3.0.0") {
				t.Errorf("mtail: image %s, Debian %s: want 3.0 releases both (the language they share)", image, debian)
			}
		case tag != debian:
			t.Errorf("%s: image %s, Debian's %s is %s: run the same release in both stacks", svcName, image, pkg, debian)
		}
	}
}
