package composetest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// `make image` builds the image for several platforms, each
// cross-compiled by a builder on the build host's own platform, labels it
// with the OCI annotations a registry and a scanner read (source, revision,
// version), attaches an SBOM, and names it as the Helm chart's default
// image (registry/repository:appVersion), so that the chart runs what the
// target publishes. No Docker engine here: the Dockerfile and the target
// are read.
func TestImageBuild(t *testing.T) {
	read := func(rel string) string {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	df := read("Dockerfile")
	stages := regexp.MustCompile(`(?m)^FROM `).Split(df, -1)
	build, final := stages[1], stages[len(stages)-1]
	if !strings.HasPrefix(build, "--platform=$BUILDPLATFORM ") || !strings.Contains(build, "GOOS=$TARGETOS GOARCH=$TARGETARCH go build") {
		t.Error("the builder stage must run on $BUILDPLATFORM and build for GOOS=$TARGETOS GOARCH=$TARGETARCH (one image per platform, no emulation)")
	}
	for label, arg := range map[string]string{"source": "", "revision": "REVISION", "version": "VERSION"} {
		m := regexp.MustCompile(`org\.opencontainers\.image\.` + label + `="([^"]+)"`).FindStringSubmatch(final)
		switch {
		case m == nil:
			t.Errorf("the final stage has no LABEL org.opencontainers.image.%s", label)
		case arg != "" && (m[1] != "${"+arg+"}" || !regexp.MustCompile(`(?m)^ARG `+arg+`=`).MatchString(final)):
			t.Errorf("org.opencontainers.image.%s = %q, want ${%s} from an ARG of the final stage", label, m[1], arg)
		case arg == "" && m[1] != "https://github.com/kvstack/kvstack":
			t.Errorf("org.opencontainers.image.source = %q", m[1])
		}
	}

	mk := read("Makefile")
	target := regexp.MustCompile(`(?ms)^image:.*?\n\n`).FindString(mk)
	for _, want := range []string{"docker buildx build", "--platform $(PLATFORMS)", "--build-arg VERSION=$(VERSION)", "--build-arg REVISION=$(REVISION)", "--sbom=true", "--provenance=", "-t $(IMAGE):$(VERSION)"} {
		if !strings.Contains(target, want) {
			t.Errorf("make image: no %s", want)
		}
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(IMAGE|PLATFORMS)\s+\?=\s+(\S+)`).FindAllStringSubmatch(mk, -1) {
		vars[m[1]] = m[2]
	}
	if n := len(strings.Split(vars["PLATFORMS"], ",")); n < 2 {
		t.Errorf("PLATFORMS = %q, want several (amd64 and arm64)", vars["PLATFORMS"])
	}
	var values struct {
		Image struct{ Registry, Repository string }
	}
	if err := yaml.Unmarshal([]byte(read("deploy/k8s/chart/values.yaml")), &values); err != nil {
		t.Fatal(err)
	}
	if want := values.Image.Registry + "/" + values.Image.Repository; vars["IMAGE"] != want {
		t.Errorf("make image names %s, the chart runs %s by default", vars["IMAGE"], want)
	}
	if !strings.Contains(mk, `VERSION   ?= $(shell awk '/^appVersion:/`) {
		t.Error("make image's VERSION must be the chart's appVersion, the tag the chart runs by default")
	}
}
