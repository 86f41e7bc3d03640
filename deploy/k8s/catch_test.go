package k8s

import (
	"slices"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Each check fails when a source changes without the manifests following,
// or when the manifests break on their own: the same check, run on a broken
// copy of a build or of the sources, must find something.
func TestChecksCatch(t *testing.T) {
	api := func(m *manifests) *corev1.Container { return m.mainContainer("api").c }
	consumer := func(m *manifests) *corev1.Container { return m.mainContainer("consumer").c }
	setEnv := func(c *corev1.Container, name, value string) {
		if e := envVar(c, name); e != nil {
			e.Value, e.ValueFrom = value, nil
			return
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	}
	policy := func(m *manifests, name string) *networkingv1.NetworkPolicy {
		for _, np := range m.netpols {
			if np.Name == name {
				return np
			}
		}
		t.Fatalf("no NetworkPolicy %s", name)
		return nil
	}
	cases := []struct {
		name, check, overlay string
		breakIt              func(m *manifests, s *sources)
	}{
		{"a variable no binary reads", "env", "dev", func(m *manifests, s *sources) { setEnv(api(m), "REDIS_HOST", "x") }},
		{"auth turned off", "auth", "prod", func(m *manifests, s *sources) { setEnv(api(m), "KV_AUTH", "off") }},
		{"the policy ConfigMap drifts from deploy/auth/policy.yaml", "auth", "dev", func(m *manifests, s *sources) {
			for _, c := range m.configMaps {
				for k := range c.Data {
					if strings.HasSuffix(k, "policy.yaml") {
						c.Data[k] += "\n# an edit\n"
					}
				}
			}
		}},
		{"the JWKS file in no mounted Secret", "auth", "dev", func(m *manifests, s *sources) {
			setEnv(api(m), "KV_AUTH_JWKS_FILE", "/elsewhere/jwks.json")
		}},
		{"the binaries read a new address (issue 12's RABBITMQ_URLS)", "env", "prod", func(m *manifests, s *sources) {
			s.env["api"]["RABBITMQ_URLS"] = "amqp://guest:guest@127.0.0.1:5672/"
		}},
		{"the binaries rename REDIS_ADDR and the manifests do not follow", "env", "prod", func(m *manifests, s *sources) {
			delete(s.env["api"], "REDIS_ADDR")
			s.env["api"]["REDIS_ADDRS"] = "127.0.0.1:6379"
		}},
		{"a password in clear", "env", "dev", func(m *manifests, s *sources) {
			setEnv(api(m), "RABBITMQ_URL", "amqp://kv:secret@kvstack-rabbitmq:5672/")
		}},
		{"stack.env moves the API's port", "ports", "dev", func(m *manifests, s *sources) { s.ports["KV_API1_PORT"] = "9081" }},
		{"stack.env moves Jaeger's OTLP port", "ports", "prod", func(m *manifests, s *sources) { s.ports["KV_JAEGER_OTLP_HTTP_PORT"] = "4320" }},
		{"stack.env moves RabbitMQ's port from the operator's", "ports", "prod", func(m *manifests, s *sources) { s.ports["RABBITMQ_PORT"] = "5673" }},
		{"a Redis address no operator makes", "ports", "prod", func(m *manifests, s *sources) { setEnv(consumer(m), "REDIS_ADDR", "redis:6379") }},
		{"cluster seeds that are not the leaders' pods", "ports", "prod", func(m *manifests, s *sources) {
			setEnv(api(m), "REDIS_ADDR", "kvstack-redis-leader-0.kvstack-redis-leader-headless:6379,kvstack-redis-leader-9.nowhere:6379")
		}},
		{"a Redis Cluster addressed as one node", "ports", "prod", func(m *manifests, s *sources) { setEnv(consumer(m), "REDIS_CLUSTER", "false") }},
		{"one Redis node addressed as a cluster", "ports", "dev", func(m *manifests, s *sources) { setEnv(api(m), "REDIS_CLUSTER", "true") }},
		{"the API stops serving /readyz", "probes", "dev", func(m *manifests, s *sources) {
			s.routes = []string{"/api", "/api/all", "/healthz", "/metrics"}
		}},
		{"readiness out at one slow answer", "probes", "dev", func(m *manifests, s *sources) {
			api(m).ReadinessProbe.FailureThreshold, api(m).ReadinessProbe.TimeoutSeconds = 1, 1
		}},
		{"liveness on readiness' route", "probes", "prod", func(m *manifests, s *sources) { consumer(m).LivenessProbe.HTTPGet.Path = "/readyz" }},
		{"a probe on a port nothing listens on", "probes", "prod", func(m *manifests, s *sources) {
			api(m).ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9999)
		}},
		{"KEDA watches one queue", "scaling", "prod", func(m *manifests, s *sources) {
			m.scaledObjects[0].Spec.Triggers = m.scaledObjects[0].Spec.Triggers[:1]
		}},
		{"the consumer's queue is renamed", "scaling", "dev", func(m *manifests, s *sources) { s.env["consumer"]["RABBITMQ_QUEUE_DEL"] = "delete_key" }},
		{"a shutdown longer than the grace period", "scaling", "prod", func(m *manifests, s *sources) { s.env["consumer"]["KV_SHUTDOWN_TIMEOUT"] = "60s" }},
		{"pools beyond max_connections", "scaling", "prod", func(m *manifests, s *sources) { s.env["api"]["PG_MAX_CONNS"] = "64" }},
		{"one API pod in prod", "scaling", "prod", func(m *manifests, s *sources) { m.hpas[0].Spec.MinReplicas = new(int32(1)) }},
		{"classic queues", "engines", "dev", func(m *manifests, s *sources) { setEnv(consumer(m), "RABBITMQ_QUEUE_TYPE", "classic") }},
		{"asynchronous PostgreSQL in prod", "engines", "prod", func(m *manifests, s *sources) {
			m.postgreses[0].Spec.PostgresConfiguration.Synchronous = nil
		}},
		{"Redis without replicas in prod", "engines", "prod", func(m *manifests, s *sources) {
			m.redisClusters[0].Spec.RedisFollower.Replicas = new(int32(0))
		}},
		{"/metrics routed", "edge", "prod", func(m *manifests, s *sources) {
			r := &m.httpRoutes[0].Spec.Rules
			*r = append(*r, (*r)[0])
			(*r)[len(*r)-1].Matches = []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: new(gatewayv1.PathMatchExact), Value: new("/metrics")}}}
		}},
		{"a Prefix path", "edge", "dev", func(m *manifests, s *sources) {
			m.httpRoutes[0].Spec.Rules[0].Matches[0].Path.Type = new(gatewayv1.PathMatchPathPrefix)
		}},
		{"a timeout unlike nginx's", "edge", "prod-external", func(m *manifests, s *sources) {
			m.httpRoutes[0].Spec.Rules[1].Timeouts.BackendRequest = new(gatewayv1.Duration("5s"))
		}},
		{"clients' trace context passed on", "edge", "dev", func(m *manifests, s *sources) {
			m.httpRoutes[0].Spec.Rules[1].Filters = nil
		}},
		{"writes retried on the API's 503", "edge", "prod", func(m *manifests, s *sources) {
			m.httpRoutes[0].Spec.Rules[0].Retry = &gatewayv1.HTTPRouteRetry{Codes: []gatewayv1.HTTPRouteRetryStatusCode{502, 503}}
		}},
		{"a write retried after its backend's timeout", "edge", "dev", func(m *manifests, s *sources) {
			m.httpRoutes[0].Spec.Rules[0].Retry = &gatewayv1.HTTPRouteRetry{Codes: []gatewayv1.HTTPRouteRetryStatusCode{502}}
			m.httpRoutes[0].Spec.Rules[0].Timeouts.Request = new(gatewayv1.Duration("70s"))
		}},
		{"the probes published", "edge", "prod", func(m *manifests, s *sources) {
			r := &m.httpRoutes[0].Spec.Rules
			*r = append(*r, (*r)[0])
			(*r)[len(*r)-1].Matches = []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: new(gatewayv1.PathMatchExact), Value: new("/readyz")}}}
		}},
		{"a certificate for another host", "edge", "dev", func(m *manifests, s *sources) {
			m.edgeCertificates()[0].Spec.DNSNames = []string{"other.example.com"}
		}},
		{"no HSTS on the listing", "edge", "prod", func(m *manifests, s *sources) {
			fs := m.httpRoutes[0].Spec.Rules[1].Filters
			m.httpRoutes[0].Spec.Rules[1].Filters = slices.DeleteFunc(fs, func(f gatewayv1.HTTPRouteFilter) bool {
				return f.Type == gatewayv1.HTTPRouteFilterResponseHeaderModifier
			})
		}},
		{"HSTS for a minute", "edge", "dev", func(m *manifests, s *sources) {
			for i, f := range m.httpRoutes[0].Spec.Rules[0].Filters {
				if f.ResponseHeaderModifier != nil {
					m.httpRoutes[0].Spec.Rules[0].Filters[i].ResponseHeaderModifier.Set[0].Value = "max-age=60"
				}
			}
		}},
		{"a certificate from an issuer of another kind", "edge", "prod", func(m *manifests, s *sources) {
			m.edgeCertificates()[0].Spec.IssuerRef.Kind = "Secret"
		}},
		{"a certificate keeping its key at renewal", "edge", "dev", func(m *manifests, s *sources) {
			m.edgeCertificates()[0].Spec.PrivateKey.RotationPolicy = "Never"
		}},
		{"PostgreSQL's certificate unchecked", "enginetls", "prod", func(m *manifests, s *sources) { setEnv(consumer(m), "PG_SSLMODE", "require") }},
		{"the CA's private key mounted", "enginetls", "dev", func(m *manifests, s *sources) {
			vs := m.deployment("kvstack-api").Spec.Template.Spec.Volumes
			for i, v := range vs {
				if v.Secret != nil && strings.HasSuffix(v.Secret.SecretName, "-ca") {
					vs[i].Secret.Items = nil
				}
			}
		}},
		{"the root certificate at a path nothing mounts", "enginetls", "prod", func(m *manifests, s *sources) {
			setEnv(api(m), "PG_SSLROOTCERT", "/etc/ssl/certs/ca-certificates.crt")
		}},
		{"the exporter without verify-full", "enginetls", "dev", func(m *manifests, s *sources) {
			d := m.deployment("kvstack-postgres-exporter")
			envVar(&d.Spec.Template.Spec.Containers[0], "DATA_SOURCE_URI").Value = "kvstack-pg-rw:5432/kvstack?sslmode=require"
		}},
		{"RabbitMQ without TLS", "enginetls", "prod", func(m *manifests, s *sources) { m.rabbitmqs[0].Spec.TLS = nil }},
		{"a consumer that does not verify RabbitMQ", "enginetls", "dev", func(m *manifests, s *sources) {
			c := consumer(m)
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "RABBITMQ_TLS_CA_FILE" })
		}},
		{"RabbitMQ's private key mounted beside its CA", "enginetls", "prod", func(m *manifests, s *sources) {
			vs := m.deployment("kvstack-api").Spec.Template.Spec.Volumes
			for i, v := range vs {
				if v.Secret != nil && v.Secret.SecretName == "kvstack-rabbitmq-tls" {
					vs[i].Secret.Items = append(vs[i].Secret.Items, corev1.KeyToPath{Key: "tls.key", Path: "tls.key"})
				}
			}
		}},
		{"KEDA without the CA", "enginetls", "prod", func(m *manifests, s *sources) {
			ta := m.triggerAuths[0]
			ta.Spec.SecretTargetRef = slices.DeleteFunc(ta.Spec.SecretTargetRef, func(r kedav1alpha1.AuthSecretTargetRef) bool { return r.Parameter == "ca" })
		}},
		{"RabbitMQ's certificate not for the host clients dial", "enginetls", "dev", func(m *manifests, s *sources) {
			for _, c := range m.certificates {
				if c.Spec.SecretName == "kvstack-rabbitmq-tls" {
					c.Spec.DNSNames = []string{"kvstack-rabbitmq"}
				}
			}
		}},
		{"a managed Redis in plain text", "enginetls", "prod-external", func(m *manifests, s *sources) {
			envVar(api(m), "REDIS_ADDR").Value = "kvstack.redis.example.internal:6379"
		}},
		{"Redis without TLS", "enginetls", "prod", func(m *manifests, s *sources) { m.redisClusters[0].Spec.TLS = nil }},
		{"a consumer that speaks plain Redis", "enginetls", "dev", func(m *manifests, s *sources) {
			envVar(consumer(m), "REDIS_ADDR").Value = "kvstack-redis:6379"
		}},
		{"the image's CA variable missing", "enginetls", "dev", func(m *manifests, s *sources) { m.redises[0].Spec.Env = nil }},
		{"Redis Cluster nodes announced by name under TLS", "enginetls", "prod", func(m *manifests, s *sources) {
			for _, cm := range m.configMaps {
				if v, ok := cm.Data[redisAdditionalKey]; ok {
					cm.Data[redisAdditionalKey] = strings.ReplaceAll(v, "cluster-preferred-endpoint-type ip", "")
				}
			}
		}},
		{"the API checks Redis for a name its certificate lacks", "enginetls", "prod", func(m *manifests, s *sources) {
			envVar(api(m), "REDIS_TLS_SERVER_NAME").Value = "kvstack-redis-leader-0"
		}},
		{"Redis' private key mounted beside its CA", "enginetls", "dev", func(m *manifests, s *sources) {
			pod := m.mainContainer("api").pod
			for i, v := range pod.Volumes {
				if v.Name == "redis-ca" {
					pod.Volumes[i].Secret.Items = nil
				}
			}
		}},
		{"Redis without ACL users", "privilege", "prod", func(m *manifests, s *sources) { m.redisClusters[0].Spec.ACL = nil }},
		{"the consumer as Redis' default user", "privilege", "dev", func(m *manifests, s *sources) {
			envVar(consumer(m), "REDIS_PASSWORD").ValueFrom.SecretKeyRef.Name = "kvstack-redis"
		}},
		{"an ACL file of a Secret the guide does not make", "privilege", "prod", func(m *manifests, s *sources) {
			m.redisClusters[0].Spec.ACL.Secret.SecretName = "kvstack-redis-users"
		}},
		{"the Redis exporter as the default user", "privilege", "prod", func(m *manifests, s *sources) {
			m.redisClusters[0].Spec.RedisExporter.Env = nil // the operator's REDIS_PASSWORD alone
		}},
		{"the Redis exporter with the default user's password", "privilege", "dev", func(m *manifests, s *sources) {
			(*m.redises[0].Spec.RedisExporter.Env)[1].ValueFrom.SecretKeyRef.Name = "kvstack-redis"
		}},
		{"the API as the database's owner", "privilege", "prod", func(m *manifests, s *sources) {
			envVar(api(m), "DATABASE_URL").ValueFrom.SecretKeyRef.Name = "kvstack-pg-app"
		}},
		{"the app role in pg_monitor", "privilege", "dev", func(m *manifests, s *sources) {
			for i, r := range m.postgreses[0].Spec.Managed.Roles {
				if r.Name == "kvstack_app" {
					m.postgreses[0].Spec.Managed.Roles[i].InRoles = []string{"pg_monitor"}
				}
			}
		}},
		{"the exporter's role not granted CONNECT", "privilege", "prod", func(m *manifests, s *sources) {
			c := &m.jobs[0].Spec.Template.Spec.Containers[0]
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "KV_MIGRATE_MONITOR_ROLES" })
		}},
		{"the app role not granted", "privilege", "dev", func(m *manifests, s *sources) {
			envVar(&m.jobs[0].Spec.Template.Spec.Containers[0], "KV_MIGRATE_APP_ROLES").Value = "someone_else"
		}},
		{"the API as RabbitMQ's default user", "privilege", "prod", func(m *manifests, s *sources) {
			envVar(api(m), "RABBITMQ_URL").ValueFrom.SecretKeyRef.Name = "kvstack-rabbitmq-default-user"
		}},
		{"the consumer's user may publish", "privilege", "dev", func(m *manifests, s *sources) {
			for _, pm := range m.rabbitPerms {
				if pm.Name == "kvstack-consumer" {
					pm.Spec.Permissions.Write = ".*"
				}
			}
		}},
		{"the API's user may configure", "privilege", "prod", func(m *manifests, s *sources) {
			for _, pm := range m.rabbitPerms {
				if pm.Name == "kvstack-api" {
					pm.Spec.Permissions.Configure = ".*"
				}
			}
		}},
		{"the migrations as RabbitMQ's default user", "privilege", "dev", func(m *manifests, s *sources) {
			e := envVar(&m.jobs[0].Spec.Template.Spec.Containers[0], "RABBITMQ_URL")
			e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key = "kvstack-rabbitmq-default-user", "connection_string"
		}},
		{"KEDA as RabbitMQ's default user", "privilege", "prod", func(m *manifests, s *sources) {
			for i, r := range m.triggerAuths[0].Spec.SecretTargetRef {
				if r.Parameter == "host" {
					m.triggerAuths[0].Spec.SecretTargetRef[i].Name, m.triggerAuths[0].Spec.SecretTargetRef[i].Key = "kvstack-rabbitmq-default-user", "connection_string"
				}
			}
		}},
		{"KEDA's user tagged for the management API", "privilege", "dev", func(m *manifests, s *sources) {
			for _, u := range m.rabbitUsers {
				if u.Name == "kvstack-keda" {
					u.Spec.Tags = []string{"monitoring"}
				}
			}
		}},
		{"the migrations' user may configure any queue", "privilege", "prod", func(m *manifests, s *sources) {
			for _, pm := range m.rabbitPerms {
				if pm.Name == "kvstack-migrations" {
					pm.Spec.Permissions.Configure = ".*"
				}
			}
		}},
		{"KEDA's host not its user's URI", "secrets", "prod", func(m *manifests, s *sources) {
			for i, r := range m.triggerAuths[0].Spec.SecretTargetRef {
				if r.Parameter == "host" {
					m.triggerAuths[0].Spec.SecretTargetRef[i].Key = "connection_string"
				}
			}
		}},
		{"no WAL archive", "backups", "prod", func(m *manifests, s *sources) { m.postgreses[0].Spec.Plugins = nil }},
		{"the WAL archived to a store the release lacks", "backups", "prod", func(m *manifests, s *sources) {
			m.postgreses[0].Spec.Plugins[0].Parameters["barmanObjectName"] = "elsewhere"
		}},
		{"base backups weekly", "backups", "prod", func(m *manifests, s *sources) { m.scheduledBackup[0].Spec.Schedule = "0 0 3 * * 0" }},
		{"base backups by the deprecated in-tree method", "backups", "prod", func(m *manifests, s *sources) {
			m.scheduledBackup[0].Spec.Method = "barmanObjectStore"
		}},
		{"no ScheduledBackup", "backups", "prod", func(m *manifests, s *sources) { m.scheduledBackup = nil }},
		{"no alert on a stale base backup", "backups", "prod", func(m *manifests, s *sources) {
			for _, g := range m.rules[0].Spec.Groups {
				for i, r := range g.Rules {
					if r.Alert == "CloudNativePGBackupTooOld" {
						g.Rules[i].Expr = intstr.FromString(strings.ReplaceAll(r.Expr.String(), "barman_cloud_cloudnative_pg_io_", "cnpg_collector_"))
					}
				}
			}
		}},
		{"backups kept a day", "backups", "prod", func(m *manifests, s *sources) { m.objectStores[0].Spec.RetentionPolicy = "1d" }},
		{"a job renamed", "monitoring", "prod", func(m *manifests, s *sources) {
			m.serviceMonitors[0].Spec.Endpoints[0].RelabelConfigs[0].Replacement = new("api")
		}},
		{"RabbitMQ scraped without its families", "monitoring", "dev", func(m *manifests, s *sources) {
			for _, pm := range m.podMonitors {
				for i := range pm.Spec.PodMetricsEndpoints {
					pm.Spec.PodMetricsEndpoints[i].Params = nil
				}
			}
		}},
		{"a rule edited in the build", "monitoring", "prod", func(m *manifests, s *sources) {
			m.rules[0].Spec.Groups[0].Rules[0].For = new(monitoringv1.Duration("1h"))
		}},
		{"a dashboard edited in the build", "monitoring", "dev", func(m *manifests, s *sources) {
			m.configMap("kvstack-dashboards").Data["kvstack-overview.json"] = "{}"
		}},
		{"an inhibit rule lost", "monitoring", "prod", func(m *manifests, s *sources) {
			m.amConfigs[0].Spec.InhibitRules = m.amConfigs[0].Spec.InhibitRules[:1]
		}},
		{"an SLO's ticket no longer held by its page", "monitoring", "dev", func(m *manifests, s *sources) {
			rules := m.amConfigs[0].Spec.InhibitRules
			rules[len(rules)-1].Equal = nil
		}},
		{"the Redis nodes without their exporter", "monitoring", "prod", func(m *manifests, s *sources) {
			m.redisClusters[0].Spec.RedisExporter = nil
		}},
		{"kvstack:latest", "images", "prod", func(m *manifests, s *sources) { api(m).Image = "kvstack:latest" }},
		{"an untagged engine", "images", "dev", func(m *manifests, s *sources) { m.rabbitmqs[0].Spec.Image = "rabbitmq" }},
		{"RabbitMQ on another line than compose", "images", "prod", func(m *manifests, s *sources) {
			m.rabbitmqs[0].Spec.Image = "rabbitmq:4.1.0-management"
		}},
		{"a Redis exporter of another release than compose's", "images", "dev", func(m *manifests, s *sources) {
			m.redises[0].Spec.RedisExporter.Image = "quay.io/opstree/redis-exporter:v1.44.0"
		}},
		{"a binary the Dockerfile does not build", "images", "prod", func(m *manifests, s *sources) { api(m).Command = []string{"/kvstack/kvbench"} }},
		{"migrations after the install with managed databases", "migrations", "prod-external", func(m *manifests, s *sources) {
			m.jobs[0].Annotations["helm.sh/hook"] = "post-install,pre-upgrade"
		}},
		{"migrations before the operators made the database", "migrations", "dev", func(m *manifests, s *sources) {
			m.jobs[0].Annotations["helm.sh/hook"] = "pre-install,pre-upgrade"
		}},
		{"a Secret committed", "secrets", "dev", func(m *manifests, s *sources) {
			m.secrets = append(m.secrets, &corev1.Secret{})
		}},
		{"DATABASE_URL from the wrong key", "secrets", "prod", func(m *manifests, s *sources) {
			envVar(consumer(m), "DATABASE_URL").ValueFrom.SecretKeyRef.Key = "password"
		}},
		{"a Secret docs/KUBERNETES.md does not create", "secrets", "prod", func(m *manifests, s *sources) {
			name := "kvstack-redis-auth"
			m.redisClusters[0].Spec.KubernetesConfig.RedisSecret.Name = &name
		}},
		{"no way out to PostgreSQL", "network", "prod", func(m *manifests, s *sources) {
			np := policy(m, "kvstack-api")
			np.Spec.Egress = np.Spec.Egress[:1]
		}},
		{"RabbitMQ reached in plain AMQP though it serves TLS", "network", "prod", func(m *manifests, s *sources) {
			for _, np := range m.netpols {
				for i := range np.Spec.Egress {
					for j, pt := range np.Spec.Egress[i].Ports {
						if pt.Port != nil && pt.Port.IntValue() == rabbitmqAMQPSPort {
							np.Spec.Egress[i].Ports[j].Port = new(intstr.FromInt32(rabbitmqAMQPPort))
						}
					}
				}
			}
		}},
		{"egress wide open", "network", "dev", func(m *manifests, s *sources) {
			np := policy(m, "kvstack-consumer")
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{})
		}},
		{"stack.env moves PostgreSQL's port", "network", "prod", func(m *manifests, s *sources) { s.ports["PGPORT"] = "5433" }},
		{"Prometheus kept out of Jaeger's spanmetrics", "network", "dev", func(m *manifests, s *sources) {
			np := policy(m, "kvstack-jaeger")
			np.Spec.Ingress = np.Spec.Ingress[:1]
		}},
		{"Jaeger cut off from Prometheus", "network", "prod", func(m *manifests, s *sources) {
			np := policy(m, "kvstack-jaeger")
			np.Spec.Egress = np.Spec.Egress[:1]
		}},
		{"the PostgreSQL exporter kept out of PostgreSQL", "network", "prod", func(m *manifests, s *sources) {
			np := policy(m, "kvstack-pg")
			np.Spec.Ingress[0].From = np.Spec.Ingress[0].From[:2] // the exporter is the third peer
		}},
		{"the monitoring namespace let into the API", "network", "prod", func(m *manifests, s *sources) {
			np := policy(m, "kvstack-api")
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}}})
		}},
		{"DNS through kube-dns only (NodeLocal DNSCache cut off)", "network", "dev", func(m *manifests, s *sources) {
			np := policy(m, "kvstack-consumer")
			np.Spec.Egress[0].To = np.Spec.Egress[0].To[:1]
		}},
		{"a bare image name", "images", "dev", func(m *manifests, s *sources) { api(m).Image = "kvstack:0.1.0" }},
		{"an autoscaled Deployment with replicas", "scaling", "prod", func(m *manifests, s *sources) {
			m.deployment("kvstack-consumer").Spec.Replicas = new(int32(1))
		}},
		{"a drain the stop bound cannot hold", "scaling", "dev", func(m *manifests, s *sources) { s.env["api"]["KV_DRAIN_DELAY"] = "14s" }},
		{"no time for the routing to forget a pod", "scaling", "prod", func(m *manifests, s *sources) { s.env["api"]["KV_DRAIN_DELAY"] = "0s" }},
		{"RabbitMQ's volume at the operator's disk limit", "capacity", "dev", func(m *manifests, s *sources) {
			m.rabbitmqs[0].Spec.Persistence.Storage = new(resource.MustParse("2Gi"))
		}},
		{"a disk limit raised in additionalConfig", "capacity", "prod", func(m *manifests, s *sources) {
			m.rabbitmqs[0].Spec.Rabbitmq.AdditionalConfig += "disk_free_limit.absolute = 8GB\n"
		}},
		{"PostgreSQL given more connections than its memory holds", "capacity", "dev", func(m *manifests, s *sources) {
			m.postgreses[0].Spec.PostgresConfiguration.Parameters["max_connections"] = "1000"
		}},
		{"Redis without maxmemory", "redis", "dev", func(m *manifests, s *sources) {
			m.redises[0].Spec.RedisConfig.AdditionalRedisConfig = nil
		}},
		{"Redis followers without maxmemory", "redis", "prod", func(m *manifests, s *sources) {
			m.redisClusters[0].Spec.RedisFollower.RedisConfig = nil
		}},
		{"maxmemory at the container's limit", "redis", "prod", func(m *manifests, s *sources) {
			cm := m.configMap(*m.redisClusters[0].Spec.RedisLeader.RedisConfig.AdditionalRedisConfig)
			cm.Data[redisAdditionalKey] = "maxmemory 512mb\nmaxmemory-policy allkeys-lru\n"
		}},
		{"an alert without kvstack's namespace", "routing", "prod", func(m *manifests, s *sources) {
			for i, r := range m.rules[0].Spec.Groups[0].Rules {
				if r.Alert != "" {
					delete(m.rules[0].Spec.Groups[0].Rules[i].Labels, "namespace")
					return
				}
			}
		}},
		{"an AlertmanagerConfig in another namespace", "routing", "dev", func(m *manifests, s *sources) { m.amConfigs[0].Namespace = "elsewhere" }},
		{"RabbitMQ 3.13, out of community support", "versions", "dev", func(m *manifests, s *sources) {
			m.rabbitmqs[0].Spec.Image = "rabbitmq:3.13.7-management"
		}},
		{"Redis 7.0, end of life", "versions", "prod", func(m *manifests, s *sources) {
			m.redisClusters[0].Spec.KubernetesConfig.Image = "quay.io/opstree/redis:v7.0.15"
		}},
		{"the 2022 PostgreSQL exporter", "versions", "prod-external", func(m *manifests, s *sources) {
			m.deployment("kvstack-postgres-exporter").Spec.Template.Spec.Containers[0].Image = "prometheuscommunity/postgres-exporter:v0.11.1"
		}},
		{"the 2022 Redis exporter", "versions", "dev", func(m *manifests, s *sources) {
			m.redises[0].Spec.RedisExporter.Image = "oliver006/redis_exporter:v1.45.0"
		}},
		{"the 2022 Redis exporter beside a cluster", "versions", "prod", func(m *manifests, s *sources) {
			m.redisClusters[0].Spec.RedisExporter.Image = "oliver006/redis_exporter:v1.45.0"
		}},
		{"the exporter as the app's owner", "postgres", "prod", func(m *manifests, s *sources) {
			c := &m.deployment("kvstack-postgres-exporter").Spec.Template.Spec.Containers[0]
			envVar(c, "DATA_SOURCE_USER").ValueFrom.SecretKeyRef.Name = "kvstack-pg-app"
			envVar(c, "DATA_SOURCE_PASS").ValueFrom.SecretKeyRef.Name = "kvstack-pg-app"
		}},
		{"the monitoring role out of pg_monitor", "postgres", "dev", func(m *manifests, s *sources) {
			for i, r := range m.postgreses[0].Spec.Managed.Roles {
				if r.Name == "kvstack_monitor" {
					m.postgreses[0].Spec.Managed.Roles[i].InRoles = nil
				}
			}
		}},
		{"CloudNativePG's exporter not scraped", "postgres", "prod", func(m *manifests, s *sources) {
			m.podMonitors = slices.DeleteFunc(m.podMonitors, func(pm *monitoringv1.PodMonitor) bool {
				return selects(&pm.Spec.Selector, map[string]string{postgresPodLabel: "kvstack-pg"})
			})
		}},
		{"the standby query run on the primary only", "postgres", "dev", func(m *manifests, s *sources) {
			sel := m.postgreses[0].Spec.Monitoring.CustomQueriesConfigMap[0]
			cm := m.configMap(sel.Name)
			cm.Data[sel.Key] = strings.Replace(cm.Data[sel.Key], "query:", "master: true\n  query:", 1)
		}},
		{"Redis open to every namespace", "network", "prod", func(m *manifests, s *sources) {
			np := policy(m, "kvstack-redis")
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
		}},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.check] = true
		t.Run(c.check+"/"+c.name, func(t *testing.T) {
			m, s := mustBuild(t, c.overlay), mustSources(t)
			if got := checks[c.check](t, m, s); len(got) > 0 {
				t.Fatalf("intact overlay %s already fails: %v", c.overlay, got)
			}
			c.breakIt(m, s)
			got := checks[c.check](t, m, s)
			if len(got) == 0 {
				t.Errorf("check %q found nothing wrong", c.check)
			}
			for _, p := range got {
				t.Log(p)
			}
		})
	}
	for name := range checks {
		if !covered[name] {
			t.Errorf("check %q is never shown failing", name)
		}
	}
}
