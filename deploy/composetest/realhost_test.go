package composetest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// What a real Docker host needs of both compose files (issue 23): every
// image pinned to an exact release (or a digest), so that two hosts run the
// same; every bind mount relabelled for SELinux (:z, shared), so that the
// containers of Fedora and RHEL hosts can read their configs; nginx's
// access log, a file in a volume, rotated.
func TestComposeForARealHost(t *testing.T) {
	for _, file := range composeFiles {
		t.Run(file, func(t *testing.T) {
			for _, problem := range realHostProblems(mustLoadFile(t, file)) {
				t.Error(problem)
			}
		})
	}
}

// exactTag: a release's full version (1.27.5, v2.53.4, 16.10, 4.3.4,
// each maybe with a variant suffix); a digest also pins.
var exactTag = regexp.MustCompile(`^v?\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?$`)

// floats: image names no exact release and no digest.
func floats(image string) bool {
	ref, digest, pinned := strings.Cut(image, "@sha256:")
	tag := ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	// A major.minor tag floats over patch releases but for
	// PostgreSQL, whose two numbers name a release (16.10).
	exact := exactTag.MatchString(tag) && (strings.Count(tag, ".") >= 2 || strings.HasPrefix(ref, "postgres:"))
	return !(pinned && len(digest) == 64) && !exact
}

func realHostProblems(p *types.Project) []string {
	var problems []string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range p.Services {
			if !yield(n) {
				return
			}
		}
	}) {
		s := p.Services[name]
		switch {
		case s.Build == nil:
			if floats(s.Image) {
				problems = append(problems, name+": image "+s.Image+" floats: pin the exact release (or a digest)")
			}
		case s.Build.Dockerfile != "Dockerfile":
			// An engine's image built here (the HA file's Patroni): what
			// it is built FROM is pinned too. kvstack's own Dockerfile
			// (kvstack:local, the checkout's) has checkBuilderTag.
			df, err := os.ReadFile(filepath.Join(s.Build.Context, s.Build.Dockerfile))
			if err != nil {
				problems = append(problems, name+": "+err.Error())
			}
			for _, m := range regexp.MustCompile(`(?m)^FROM\s+(?:--\S+\s+)*(\S+)`).FindAllStringSubmatch(string(df), -1) {
				if floats(m[1]) {
					problems = append(problems, name+": "+s.Build.Dockerfile+" builds FROM "+m[1]+", which floats: pin the exact release (or a digest)")
				}
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind && (v.Bind == nil || (v.Bind.SELinux != "z" && v.Bind.SELinux != "Z")) {
				problems = append(problems, name+": bind mount "+v.Source+" → "+v.Target+" has no :z, so SELinux hosts refuse the container its file")
			}
		}
	}
	problems = append(problems, accessLogRotation(p)...)
	return problems
}

// accessLogRotation: a service that shares nginx's PID namespace and its
// log volume (writable) renames the access log and has nginx reopen its
// logs (USR1 to the master, PID 1 there).
func accessLogRotation(p *types.Project) []string {
	nginx, ok := p.Services["nginx"]
	if !ok {
		return []string{"no nginx service"}
	}
	log := ""
	if v := nginx.Environment["NGINX_ACCESS_LOG"]; v != nil {
		log = *v
	}
	var volume string
	for _, v := range nginx.Volumes {
		if v.Type == types.VolumeTypeVolume && strings.HasPrefix(log, v.Target+"/") {
			volume = v.Source
		}
	}
	if volume == "" {
		return []string{"nginx: NGINX_ACCESS_LOG " + log + " is in no volume"}
	}
	for _, s := range p.Services {
		if s.Pid != "service:nginx" {
			continue
		}
		rw := false
		for _, v := range s.Volumes {
			rw = rw || (v.Type == types.VolumeTypeVolume && v.Source == volume && !v.ReadOnly)
		}
		script := strings.Join(s.Command, " ")
		env := ""
		if v := s.Environment["NGINX_ACCESS_LOG"]; v != nil {
			env = *v
		}
		if rw && env == log && strings.Contains(script, `mv -f "$NGINX_ACCESS_LOG"`) && strings.Contains(script, "kill -USR1 1") {
			return nil
		}
	}
	return []string{"nginx's access log " + log + " is never rotated: no service in nginx's PID namespace moves it and has nginx reopen it"}
}

// The check fails on the files as they were: floating tags, bind mounts
// without :z, no rotation.
func TestRealHostProblemsCatch(t *testing.T) {
	p := mustLoadFile(t, "docker-compose.yml")
	if got := realHostProblems(p); len(got) > 0 {
		t.Fatalf("intact compose file already fails: %v", got)
	}
	redis := p.Services["redis"]
	redis.Image = "redis:7-alpine"
	p.Services["redis"] = redis
	nginx := p.Services["nginx"]
	for i := range nginx.Volumes {
		if nginx.Volumes[i].Type == types.VolumeTypeBind {
			nginx.Volumes[i].Bind.SELinux = ""
		}
	}
	p.Services["nginx"] = nginx
	delete(p.Services, "nginx-logrotate")
	got := realHostProblems(p)
	for _, want := range []string{"redis: image redis:7-alpine floats", "nginx: bind mount", "never rotated"} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("no problem about %q in %v", want, got)
		}
	}
}
