package k8s

import (
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
)

// postgresCASecretTail and postgresCAKey: CloudNativePG keeps its CA in
// Secret <cluster>-ca, the certificate under ca.crt (and its private key
// under ca.key), and signs each instance's server certificate for the
// Services' names, <cluster>-rw among them.
const (
	postgresCASecretTail = "-ca"
	postgresCAKey        = "ca.crt"
)

// TLS to the engines (issue 19 §2): every client of an in-cluster
// PostgreSQL (the binaries through DATABASE_URL, the exporter through
// DATA_SOURCE_URI) connects with sslmode=verify-full against the
// operator's CA, mounted from Secret <cluster>-ca with its certificate
// alone (never ca.key, which signs server certificates). An in-cluster
// RabbitMQ serves AMQPS with a Certificate of the release for the host its
// operator's connection_string names, and every client (the binaries
// through RABBITMQ_TLS_CA_FILE, KEDA through its TriggerAuthentication)
// verifies it with the CA certificate of that Secret alone (never tls.key).
func checkEngineTLS(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	for _, pg := range m.postgreses {
		caSecret := pg.Name + postgresCASecretTail
		for _, k := range m.kvContainers() {
			// With an in-cluster Cluster, every DATABASE_URL is to it (the
			// owner's or a managed role's URI).
			if envVar(k.c, "DATABASE_URL") == nil {
				continue
			}
			if mode := envVar(k.c, "PG_SSLMODE"); mode == nil || mode.Value != "verify-full" {
				p.add("%s: PG_SSLMODE %v, want verify-full to Cluster %s", k, mode, pg.Name)
			}
			root := envVar(k.c, "PG_SSLROOTCERT")
			if root == nil || root.Value == "" {
				p.add("%s: no PG_SSLROOTCERT: verify-full needs Cluster %s's CA", k, pg.Name)
				continue
			}
			if err := mountsCA(k.pod, k.c, root.Value, caSecret); err != "" {
				p.add("%s: PG_SSLROOTCERT %s: %s", k, root.Value, err)
			}
		}
		if d := m.deployment("kvstack-postgres-exporter"); d != nil {
			c := &d.Spec.Template.Spec.Containers[0]
			e := envVar(c, "DATA_SOURCE_URI")
			var q url.Values
			uri := ""
			if e != nil {
				uri = e.Value
				_, query, _ := strings.Cut(e.Value, "?")
				q, _ = url.ParseQuery(query)
			}
			if q.Get("sslmode") != "verify-full" || q.Get("sslrootcert") == "" {
				p.add("postgres exporter: DATA_SOURCE_URI %q, want sslmode=verify-full and sslrootcert (Cluster %s's CA)", uri, pg.Name)
			} else if err := mountsCA(&d.Spec.Template.Spec, c, q.Get("sslrootcert"), caSecret); err != "" {
				p.add("postgres exporter: sslrootcert %s: %s", q.Get("sslrootcert"), err)
			}
		}
	}
	for _, r := range m.rabbitmqs {
		if r.Spec.TLS == nil || r.Spec.TLS.SecretName == "" {
			p.add("RabbitmqCluster %s: no spec.tls: its clients would speak plain AMQP", r.Name)
			continue
		}
		tlsSecret := r.Spec.TLS.SecretName
		served := false
		for _, c := range m.certificates {
			if c.Spec.SecretName == tlsSecret && c.Namespace == r.Namespace {
				served = true
				host := r.Name + "." + r.Namespace + ".svc" // the default user's connection_string
				if !slices.Contains(c.Spec.DNSNames, host) {
					p.add("Certificate %s: dnsNames %v lack %s, the host the operator's connection_string names", c.Name, c.Spec.DNSNames, host)
				}
			}
		}
		if !served {
			p.add("RabbitmqCluster %s: spec.tls.secretName %s is no Certificate's of the release", r.Name, tlsSecret)
		}
		for _, k := range m.kvContainers() {
			// Every RABBITMQ_URL is to it (a user's or the default user's).
			if envVar(k.c, "RABBITMQ_URL") == nil {
				continue
			}
			ca := envVar(k.c, "RABBITMQ_TLS_CA_FILE")
			if ca == nil || ca.Value == "" {
				p.add("%s: no RABBITMQ_TLS_CA_FILE: RabbitmqCluster %s's certificate unverified", k, r.Name)
				continue
			}
			if err := mountsCA(k.pod, k.c, ca.Value, tlsSecret); err != "" {
				p.add("%s: RABBITMQ_TLS_CA_FILE %s: %s", k, ca.Value, err)
			}
		}
		// KEDA reads the queues through the same URL: with TLS on and the
		// same CA.
		for _, ta := range m.triggerAuths {
			tlsOn, caOK := false, false
			for _, ref := range ta.Spec.ConfigMapTargetRef {
				if ref.Parameter == "tls" {
					for _, cm := range m.configMaps {
						if cm.Name == ref.Name && cm.Data[ref.Key] == "enable" {
							tlsOn = true
						}
					}
				}
			}
			for _, ref := range ta.Spec.SecretTargetRef {
				if ref.Parameter == "ca" && ref.Name == tlsSecret && ref.Key == postgresCAKey {
					caOK = true
				}
			}
			if !tlsOn || !caOK {
				p.add("TriggerAuthentication %s: tls enabled %v, ca from %s/%s %v: KEDA must verify RabbitMQ as the binaries do", ta.Name, tlsOn, tlsSecret, postgresCAKey, caOK)
			}
		}
	}
	// A managed Redis, beyond the cluster's network: over TLS too.
	if _, ok := m.external["redis"]; ok {
		for _, k := range m.kvContainers() {
			if addr := envVar(k.c, "REDIS_ADDR"); addr != nil && !strings.HasPrefix(addr.Value, "rediss://") {
				p.add("%s: REDIS_ADDR %s: a managed Redis reached in plain text, want rediss://", k, addr.Value)
			}
		}
	}
	// Redis: TLS alone on every node, from a Certificate of the release
	// for the name every client checks, with the CA the image reads.
	type redisTLS struct {
		name    string
		tls     *RedisTLSConfig
		env     []corev1.EnvVar
		cluster bool
	}
	var redises []redisTLS
	for _, r := range m.redises {
		redises = append(redises, redisTLS{"Redis " + r.Name, r.Spec.TLS, r.Spec.Env, false})
	}
	for _, r := range m.redisClusters {
		redises = append(redises, redisTLS{"RedisCluster " + r.Name, r.Spec.TLS, r.Spec.Env, true})
	}
	for _, r := range redises {
		if r.tls == nil || r.tls.Secret.SecretName == "" {
			p.add("%s: no TLS: its clients would speak plain Redis", r.name)
			continue
		}
		secret := r.tls.Secret.SecretName
		ca := r.tls.CaCertFile
		if ca == "" {
			ca = postgresCAKey
		}
		var e *corev1.EnvVar
		for i := range r.env {
			if r.env[i].Name == redisImageCAVar {
				e = &r.env[i]
			}
		}
		if e == nil || e.Value != redisTLSMount+"/"+ca {
			p.add("%s: env %s %v, want %s/%s: the image's entrypoint writes an empty tls-ca-cert-file without it, and Redis does not start", r.name, redisImageCAVar, e, redisTLSMount, ca)
		}
		var cert *certmanagerv1.Certificate
		for _, c := range m.certificates {
			if c.Spec.SecretName == secret {
				cert = c
			}
		}
		if cert == nil {
			p.add("%s: TLS.secret %s is no Certificate's of the release", r.name, secret)
			continue
		}
		if r.cluster {
			conf := ""
			for _, cm := range m.configMaps {
				conf += cm.Data[redisAdditionalKey]
			}
			if !regexp.MustCompile(`(?m)^\s*cluster-preferred-endpoint-type\s+ip\s*$`).MatchString(conf) {
				p.add("%s: TLS without cluster-preferred-endpoint-type ip: the nodes announce bare pod names, which the clients cannot resolve", r.name)
			}
		}
		for _, k := range m.kvContainers() {
			addr := envVar(k.c, "REDIS_ADDR")
			if addr == nil {
				continue
			}
			if !strings.HasPrefix(addr.Value, "rediss://") {
				p.add("%s: REDIS_ADDR %s, want rediss:// (%s serves TLS alone)", k, addr.Value, r.name)
			}
			file := envVar(k.c, "REDIS_TLS_CA_FILE")
			if file == nil || file.Value == "" {
				p.add("%s: no REDIS_TLS_CA_FILE: %s's certificate checked against no CA of the release", k, r.name)
			} else if err := mountsCA(k.pod, k.c, file.Value, secret); err != "" {
				p.add("%s: REDIS_TLS_CA_FILE %s: %s", k, file.Value, err)
			}
			name := envVar(k.c, "REDIS_TLS_SERVER_NAME")
			if name == nil || !slices.Contains(cert.Spec.DNSNames, name.Value) {
				p.add("%s: REDIS_TLS_SERVER_NAME %v is not a name of Certificate %s %v: a cluster's nodes, dialled by address, would fail the check", k, name, cert.Name, cert.Spec.DNSNames)
			}
		}
	}
	return p
}

// mountsCA says what is wrong unless file is key ca.crt of Secret secret,
// mounted into c, with no other key of that Secret mounted beside it.
func mountsCA(pod *corev1.PodSpec, c *corev1.Container, file, secret string) string {
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.Secret == nil || v.Secret.SecretName != secret {
				return "mounted from " + v.Name + ", not from Secret " + secret
			}
			if len(v.Secret.Items) == 0 {
				return "Secret " + secret + " mounted whole: its ca.key, the CA's private key, with it"
			}
			found := false
			for _, it := range v.Secret.Items {
				if it.Key != postgresCAKey {
					return "Secret " + secret + "'s key " + it.Key + " mounted: only " + postgresCAKey + " is the clients'"
				}
				if path.Clean(it.Path) == path.Clean(rel) {
					found = true
				}
			}
			if !found {
				return "not the path of " + postgresCAKey + " in volume " + v.Name
			}
			return ""
		}
		return "volume " + vm.Name + " is not in the pod"
	}
	return "in no volume the container mounts"
}
