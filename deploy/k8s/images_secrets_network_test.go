package k8s

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Every image is pinned by tag (never latest); kvstack's containers run a
// binary the Dockerfile builds; the engines and Jaeger run the release
// lines docker-compose.yml runs.
func checkImages(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	images := map[string]string{} // what -> image
	for _, d := range m.deployments {
		for _, c := range append(slices.Clone(d.Spec.Template.Spec.InitContainers), d.Spec.Template.Spec.Containers...) {
			images[d.Name+"/"+c.Name] = c.Image
		}
	}
	for _, r := range m.rabbitmqs {
		images["RabbitmqCluster "+r.Name] = r.Spec.Image
	}
	for _, pg := range m.postgreses {
		images["Cluster "+pg.Name] = pg.Spec.ImageName
	}
	for _, r := range m.redises {
		images["Redis "+r.Name] = r.Spec.KubernetesConfig.Image
		if e := r.Spec.RedisExporter; e != nil {
			images["Redis "+r.Name+" exporter"] = e.Image
		}
	}
	for _, r := range m.redisClusters {
		images["RedisCluster "+r.Name] = r.Spec.KubernetesConfig.Image
		if e := r.Spec.RedisExporter; e != nil {
			images["RedisCluster "+r.Name+" exporter"] = e.Image
		}
	}
	for what, img := range images {
		if _, tag := splitImage(img); tag == "" || tag == "latest" {
			p.add("%s: image %q is not pinned to a tag", what, img)
		}
	}

	dockerfile := string(readRepo(t, "Dockerfile"))
	for _, k := range m.kvContainers() {
		name, _ := splitImage(k.c.Image)
		if name != "kvstack" && !strings.HasSuffix(name, "/kvstack") {
			p.add("%s runs image %q, not the kvstack image", k, k.c.Image)
		}
		if !publishedImage(k.c.Image) {
			p.add("%s runs image %q: not a registry path with a release tag or digest (a bare name is docker.io/library/<name>, which nobody publishes)", k, k.c.Image)
		}
		if !strings.Contains(dockerfile, "./cmd/"+k.bin) {
			p.add("%s runs /kvstack/%s, which the Dockerfile does not build", k, k.bin)
		}
	}

	compose := composeImages(t)
	same := func(what, ours, composeService string, parts int) {
		_, tag := splitImage(ours)
		_, ctag := splitImage(compose[composeService])
		if got, want := versionParts(tag, parts), versionParts(ctag, parts); got == "" || got != want {
			p.add("%s runs %s (%s), docker-compose.yml's %s runs %s (%s)", what, ours, got, composeService, compose[composeService], want)
		}
	}
	for _, r := range m.rabbitmqs {
		same("RabbitmqCluster "+r.Name, r.Spec.Image, "rabbitmq", 2)
	}
	for _, pg := range m.postgreses {
		same("Cluster "+pg.Name, pg.Spec.ImageName, "postgres", 1)
	}
	for _, r := range m.redises {
		same("Redis "+r.Name, r.Spec.KubernetesConfig.Image, "redis", 1)
	}
	for _, r := range m.redisClusters {
		same("RedisCluster "+r.Name, r.Spec.KubernetesConfig.Image, "redis", 1)
	}
	if j := m.deployment("kvstack-jaeger"); j != nil {
		same("kvstack-jaeger", j.Spec.Template.Spec.Containers[0].Image, "jaeger", 3)
	}
	// The exporters: the release compose runs, a supported one (versions,
	// and deploy/composetest for compose's).
	if d := m.deployment("kvstack-postgres-exporter"); d != nil {
		same("kvstack-postgres-exporter", d.Spec.Template.Spec.Containers[0].Image, "postgres-exporter", 3)
	}
	for _, r := range m.redises {
		if e := r.Spec.RedisExporter; e != nil {
			same("Redis "+r.Name+" exporter", e.Image, "redis-exporter", 3)
		}
	}
	for _, r := range m.redisClusters {
		if e := r.Spec.RedisExporter; e != nil {
			same("RedisCluster "+r.Name+" exporter", e.Image, "redis-exporter", 3)
		}
	}
	return p
}

// publishedImage: registry host/path:version (or @sha256:…), the host not
// Docker Hub's library of official images.
func publishedImage(img string) bool {
	host, rest, ok := strings.Cut(img, "/")
	if !ok || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return false
	}
	if (host == "docker.io" || host == "index.docker.io") && strings.HasPrefix(rest, "library/") {
		return false
	}
	if _, digest, ok := strings.Cut(img, "@"); ok {
		return regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest)
	}
	_, tag := splitImage(img)
	return regexp.MustCompile(`^v?\d+\.\d+\.\d+`).MatchString(tag)
}

// splitImage splits repo/name:tag (a registry's port is not a tag).
func splitImage(img string) (string, string) {
	img, _, _ = strings.Cut(img, "@")
	i := strings.LastIndex(img, ":")
	if i < 0 || strings.Contains(img[i:], "/") {
		return img, ""
	}
	return img[:i], img[i+1:]
}

// versionParts is the first n dot-separated numbers of a tag: v7.0.15 -> 7,
// 3.13.7-management -> 3.13 (n=2).
func versionParts(tag string, n int) string {
	m := regexp.MustCompile(`^v?(\d+(?:\.\d+)*)`).FindStringSubmatch(tag)
	if m == nil {
		return ""
	}
	parts := strings.Split(m[1], ".")
	if len(parts) < n {
		return ""
	}
	return strings.Join(parts[:n], ".")
}

// secretRef is one reference to a Secret key.
type secretRef struct{ where, name, key string }

func (m *manifests) secretRefs() []secretRef {
	var refs []secretRef
	for _, d := range m.deployments {
		spec := d.Spec.Template.Spec
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					refs = append(refs, secretRef{d.Name + "/" + c.Name + " " + e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key})
				}
			}
		}
	}
	// CloudNativePG reads a managed role's username and password from a
	// basic-auth Secret.
	for _, pg := range m.postgreses {
		if pg.Spec.Managed == nil {
			continue
		}
		for _, r := range pg.Spec.Managed.Roles {
			if r.PasswordSecret != nil {
				for _, key := range []string{"username", "password"} {
					refs = append(refs, secretRef{"Cluster " + pg.Name + " role " + r.Name, r.PasswordSecret.Name, key})
				}
			}
		}
	}
	for _, u := range m.rabbitUsers {
		if u.Spec.ImportCredentialsSecret != nil {
			for _, key := range []string{"username", "password"} {
				refs = append(refs, secretRef{"User " + u.Name, u.Spec.ImportCredentialsSecret.Name, key})
			}
		}
	}
	for _, os := range m.objectStores {
		if c := os.Spec.Configuration.S3Credentials; c != nil {
			for _, sel := range []*corev1.SecretKeySelector{c.AccessKeyID, c.SecretAccessKey} {
				if sel != nil {
					refs = append(refs, secretRef{"ObjectStore " + os.Name, sel.Name, sel.Key})
				}
			}
		}
	}
	for _, ta := range m.triggerAuths {
		for _, r := range ta.Spec.SecretTargetRef {
			refs = append(refs, secretRef{"TriggerAuthentication " + ta.Name, r.Name, r.Key})
		}
	}
	for _, ac := range m.amConfigs {
		for _, r := range ac.Spec.Receivers {
			for _, wh := range r.WebhookConfigs {
				if wh.URLSecret != nil {
					refs = append(refs, secretRef{"AlertmanagerConfig " + ac.Name, wh.URLSecret.Name, wh.URLSecret.Key})
				}
			}
		}
	}
	redisSecret := func(where string, rs *RedisSecret) {
		if rs != nil && rs.Name != nil && rs.Key != nil {
			refs = append(refs, secretRef{where, *rs.Name, *rs.Key})
		}
	}
	// The exporter sidecar's own user (checkPrivilege).
	exporterEnv := func(where string, e *RedisExporter) {
		if e == nil || e.Env == nil {
			return
		}
		for _, v := range *e.Env {
			if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil {
				refs = append(refs, secretRef{"the exporter of " + where + " " + v.Name, v.ValueFrom.SecretKeyRef.Name, v.ValueFrom.SecretKeyRef.Key})
			}
		}
	}
	for _, r := range m.redises {
		redisSecret("Redis "+r.Name, r.Spec.KubernetesConfig.RedisSecret)
		exporterEnv("Redis "+r.Name, r.Spec.RedisExporter)
	}
	for _, r := range m.redisClusters {
		redisSecret("RedisCluster "+r.Name, r.Spec.KubernetesConfig.RedisSecret)
		exporterEnv("RedisCluster "+r.Name, r.Spec.RedisExporter)
	}
	return refs
}

// No Secret is committed: each reference is to a Secret an operator
// generates, or to one docs/KUBERNETES.md tells the user to create, with its key;
// the binaries' credentials come from the right one.
func checkSecrets(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	for _, sec := range m.secrets {
		p.add("Secret %s is committed; reference it instead", sec.Name)
	}
	generated := map[string]string{}
	for _, r := range m.rabbitmqs {
		generated[r.Name+rabbitmqSecretTail] = rabbitmqSecretKey
	}
	for _, pg := range m.postgreses {
		generated[pg.Name+"-app"] = postgresSecretKey
	}
	// cert-manager fills a Certificate's Secret with tls.crt, tls.key and
	// (from a CA Issuer) ca.crt.
	issued := map[string]bool{}
	for _, c := range m.certificates {
		issued[c.Spec.SecretName] = true
	}
	guide := string(readRepo(t, "docs/KUBERNETES.md"))
	for _, ref := range m.secretRefs() {
		if issued[ref.name] {
			if !slices.Contains([]string{"tls.crt", "tls.key", "ca.crt"}, ref.key) {
				p.add("%s: key %s of %s, which cert-manager fills with tls.crt, tls.key and ca.crt", ref.where, ref.key, ref.name)
			}
			continue
		}
		if key, ok := generated[ref.name]; ok {
			if ref.key != key {
				p.add("%s: key %s of %s, which the operator fills under %s", ref.where, ref.key, ref.name, key)
			}
			continue
		}
		if !regexp.MustCompile(`kubectl[^\n]*create secret generic ` + regexp.QuoteMeta(ref.name) + ` [^\n]*--from-literal=` + regexp.QuoteMeta(ref.key) + `=`).MatchString(guide) {
			p.add("%s: Secret %s (key %s) is neither an operator's nor created by docs/KUBERNETES.md's `kubectl create secret generic %s --from-literal=%s=…`", ref.where, ref.name, ref.key, ref.name, ref.key)
		}
	}
	want := map[string]secretRef{}
	// The owner's URI is the migrations' alone; the API and the consumers
	// use their role's (checkPrivilege).
	ownerURL := map[string]secretRef{}
	for _, pg := range m.postgreses {
		ownerURL["DATABASE_URL"] = secretRef{name: pg.Name + "-app", key: postgresSecretKey}
	}
	acl := false
	for _, r := range m.redises {
		acl = acl || r.Spec.ACL != nil
	}
	for _, r := range m.redisClusters {
		acl = acl || r.Spec.ACL != nil
	}
	for _, ref := range m.secretRefs() {
		if strings.HasPrefix(ref.where, "Redis") && !acl {
			// Without ACL users, the clients use the default user's
			// password; with them, an ACL user's (checkPrivilege).
			want["REDIS_PASSWORD"] = secretRef{name: ref.name, key: ref.key}
		}
	}
	for _, k := range m.kvContainers() {
		if w, ok := ownerURL["DATABASE_URL"]; ok && k.bin == "migrate" {
			if e := envVar(k.c, "DATABASE_URL"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != w.name || e.ValueFrom.SecretKeyRef.Key != w.key {
				p.add("%s: DATABASE_URL must come from Secret %s key %s, the owner's", k, w.name, w.key)
			}
		} else if ok {
			// The app role's Secret holds its URI under the same key.
			if e := envVar(k.c, "DATABASE_URL"); e != nil && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Key != postgresSecretKey) {
				p.add("%s: DATABASE_URL must come from its role's Secret, key %s", k, postgresSecretKey)
			}
		}
		for name, w := range want {
			if _, reads := s.env[k.bin][name]; !reads {
				continue
			}
			e := envVar(k.c, name)
			if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != w.name || e.ValueFrom.SecretKeyRef.Key != w.key {
				p.add("%s: %s must come from Secret %s key %s", k, name, w.name, w.key)
			}
		}
	}
	// RabbitMQ: the release's broker, each process and KEDA as a user of
	// its own (checkPrivilege), its URI under key uri of that user's
	// Secret; a managed broker, one URL for all, KEDA's the binaries'.
	rabbitURL := func(k kvContainer) *corev1.SecretKeySelector {
		if e := envVar(k.c, "RABBITMQ_URL"); e != nil && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
		return nil
	}
	var managed *corev1.SecretKeySelector
	if k := m.mainContainer("consumer"); k != nil && len(m.rabbitmqs) == 0 {
		managed = rabbitURL(*k)
	}
	for _, k := range m.kvContainers() {
		if _, reads := s.env[k.bin]["RABBITMQ_URL"]; !reads {
			continue
		}
		switch ref := rabbitURL(k); {
		case ref == nil:
			p.add("%s: RABBITMQ_URL from no Secret", k)
		case len(m.rabbitmqs) > 0 && ref.Key != "uri":
			p.add("%s: RABBITMQ_URL must come from its user's Secret, key uri", k)
		case managed != nil && *ref != *managed:
			p.add("%s: RABBITMQ_URL from %s/%s, the consumer's from %s/%s", k, ref.Name, ref.Key, managed.Name, managed.Key)
		}
	}
	for _, ta := range m.triggerAuths {
		for _, r := range ta.Spec.SecretTargetRef {
			switch {
			case r.Parameter == "ca":
				// checkEngineTLS
			case r.Parameter != "host":
				p.add("TriggerAuthentication %s: %s from %s/%s, only host and ca are expected", ta.Name, r.Parameter, r.Name, r.Key)
			case len(m.rabbitmqs) > 0 && r.Key != "uri":
				p.add("TriggerAuthentication %s: host from %s/%s, want its user's Secret, key uri", ta.Name, r.Name, r.Key)
			case managed != nil && (r.Name != managed.Name || r.Key != managed.Key):
				p.add("TriggerAuthentication %s: host from %s/%s, want the binaries' %s/%s", ta.Name, r.Name, r.Key, managed.Name, managed.Key)
			}
		}
	}
	return p
}
