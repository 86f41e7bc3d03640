package k8s

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// variants are the values files of values/, each rendered and checked.
var variants = []string{"dev", "prod", "prod-external"}

// testNamespace is the namespace every variant is rendered into.
const testNamespace = "kvstack"

var (
	renderMu    sync.Mutex
	renderCache = map[string]*Release{}
)

// render renders a variant once per test binary (Helm's engine takes a
// while); callers decode their own copy.
func render(variant string) (*Release, error) {
	renderMu.Lock()
	defer renderMu.Unlock()
	if r, ok := renderCache[variant]; ok {
		return r, nil
	}
	r, err := Render(context.Background(), testNamespace, ValuesFile(variant))
	if err != nil {
		return nil, err
	}
	renderCache[variant] = r
	return r, nil
}

// build renders a variant: each object, the hooks' too, as JSON.
func build(variant string) ([][]byte, error) {
	r, err := render(variant)
	if err != nil {
		return nil, err
	}
	var objs [][]byte
	docs := slices.Clone(r.Manifests)
	for _, h := range r.Hooks {
		docs = append(docs, h.Manifest)
	}
	for _, doc := range docs {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%v in\n%s", err, doc)
		}
		objs = append(objs, j)
	}
	return objs, nil
}

// manifests are a variant's objects, each in its real type.
type manifests struct {
	overlay         string // the variant
	external        map[string]externalEngine
	deployments     []*appsv1.Deployment
	jobs            []*batchv1.Job
	httpRoutes      []*gatewayv1.HTTPRoute
	certificates    []*certmanagerv1.Certificate
	issuers         []*certmanagerv1.Issuer
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	netpols         []*networkingv1.NetworkPolicy
	scaledObjects   []*kedav1alpha1.ScaledObject
	triggerAuths    []*kedav1alpha1.TriggerAuthentication
	serviceMonitors []*monitoringv1.ServiceMonitor
	podMonitors     []*monitoringv1.PodMonitor
	rules           []*monitoringv1.PrometheusRule
	amConfigs       []*monitoringv1alpha1.AlertmanagerConfig
	rabbitmqs       []*RabbitmqCluster
	rabbitUsers     []*RabbitmqUser
	rabbitPerms     []*RabbitmqPermission
	postgreses      []*PostgresCluster
	scheduledBackup []*ScheduledBackup
	objectStores    []*ObjectStore
	redisClusters   []*RedisCluster
	redises         []*Redis
}

// kinds gives each kind kvstack uses the slice its objects decode into.
// An object of any other kind fails the build.
func (m *manifests) kinds() map[schema.GroupVersionKind]func() any {
	gvk := func(gv, kind string) schema.GroupVersionKind {
		g, _ := schema.ParseGroupVersion(gv)
		return g.WithKind(kind)
	}
	return map[schema.GroupVersionKind]func() any{
		gvk("batch/v1", "Job"):                                      func() any { return add(&m.jobs) },
		gvk("gateway.networking.k8s.io/v1", "HTTPRoute"):            func() any { return add(&m.httpRoutes) },
		gvk("cert-manager.io/v1", "Certificate"):                    func() any { return add(&m.certificates) },
		gvk("cert-manager.io/v1", "Issuer"):                         func() any { return add(&m.issuers) },
		gvk("v1", "Service"):                                        func() any { return add(&m.services) },
		gvk("v1", "ConfigMap"):                                      func() any { return add(&m.configMaps) },
		gvk("v1", "Secret"):                                         func() any { return add(&m.secrets) },
		gvk("apps/v1", "Deployment"):                                func() any { return add(&m.deployments) },
		gvk("policy/v1", "PodDisruptionBudget"):                     func() any { return add(&m.pdbs) },
		gvk("autoscaling/v2", "HorizontalPodAutoscaler"):            func() any { return add(&m.hpas) },
		gvk("networking.k8s.io/v1", "NetworkPolicy"):                func() any { return add(&m.netpols) },
		gvk("keda.sh/v1alpha1", "ScaledObject"):                     func() any { return add(&m.scaledObjects) },
		gvk("keda.sh/v1alpha1", "TriggerAuthentication"):            func() any { return add(&m.triggerAuths) },
		gvk("monitoring.coreos.com/v1", "ServiceMonitor"):           func() any { return add(&m.serviceMonitors) },
		gvk("monitoring.coreos.com/v1", "PodMonitor"):               func() any { return add(&m.podMonitors) },
		gvk("monitoring.coreos.com/v1", "PrometheusRule"):           func() any { return add(&m.rules) },
		gvk("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): func() any { return add(&m.amConfigs) },
		gvk("rabbitmq.com/v1beta1", "RabbitmqCluster"):              func() any { return add(&m.rabbitmqs) },
		gvk("rabbitmq.com/v1beta1", "User"):                         func() any { return add(&m.rabbitUsers) },
		gvk("rabbitmq.com/v1beta1", "Permission"):                   func() any { return add(&m.rabbitPerms) },
		gvk("postgresql.cnpg.io/v1", "Cluster"):                     func() any { return add(&m.postgreses) },
		gvk("postgresql.cnpg.io/v1", "ScheduledBackup"):             func() any { return add(&m.scheduledBackup) },
		gvk("barmancloud.cnpg.io/v1", "ObjectStore"):                func() any { return add(&m.objectStores) },
		gvk("redis.redis.opstreelabs.in/v1beta2", "RedisCluster"):   func() any { return add(&m.redisClusters) },
		gvk("redis.redis.opstreelabs.in/v1beta2", "Redis"):          func() any { return add(&m.redises) },
	}
}

// add appends a new zero object to *list and returns it to decode into.
func add[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

// decode fills m from an overlay's objects, strictly: an unknown or
// duplicate field, a wrong type or an unknown kind is an error.
func (m *manifests) decode(objs [][]byte) error {
	kinds := m.kinds()
	for _, obj := range objs {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := kjson.UnmarshalCaseSensitivePreserveInts(obj, &meta); err != nil {
			return err
		}
		gv, err := schema.ParseGroupVersion(meta.APIVersion)
		if err != nil {
			return err
		}
		newObj, ok := kinds[gv.WithKind(meta.Kind)]
		if !ok {
			return fmt.Errorf("%s %s: no Go type for %s", meta.Kind, meta.Metadata.Name, meta.APIVersion)
		}
		strict, err := kjson.UnmarshalStrict(obj, newObj())
		if err != nil {
			return fmt.Errorf("%s %s: %w", meta.Kind, meta.Metadata.Name, err)
		}
		if len(strict) > 0 {
			return fmt.Errorf("%s %s: %v", meta.Kind, meta.Metadata.Name, strict)
		}
	}
	return nil
}

// mustBuild renders and decodes a variant afresh, so a test may change the
// result.
func mustBuild(t testing.TB, variant string) *manifests {
	t.Helper()
	objs, err := build(variant)
	if err != nil {
		t.Fatalf("helm template -f values/%s.yaml: %v", variant, err)
	}
	m := &manifests{overlay: variant, external: externalEngines(t, variant)}
	if err := m.decode(objs); err != nil {
		t.Fatalf("values/%s.yaml: %v", variant, err)
	}
	return m
}

func (m *manifests) deployment(name string) *appsv1.Deployment {
	for _, d := range m.deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func (m *manifests) job(name string) *batchv1.Job {
	for _, j := range m.jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

func (m *manifests) service(name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for _, c := range m.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestBuildDecodesStrictly renders every variant and decodes each object
// into its real type.
func TestBuildDecodesStrictly(t *testing.T) {
	for _, o := range variants {
		t.Run(o, func(t *testing.T) {
			m := mustBuild(t, o)
			if len(m.deployments) == 0 {
				t.Fatal("no Deployment built")
			}
		})
	}
}

// A field the type does not have, or a value of the wrong type, fails the
// decoding, for Kubernetes' types, the operators' Go types and the small
// structs alike.
func TestDecodeIsStrict(t *testing.T) {
	cases := []struct{ name, obj string }{
		{"unknown field in a Deployment", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replica":2}}`},
		{"wrong case in a Deployment", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"Replicas":2}}`},
		{"wrong type in a Service", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":"http"}]}}`},
		{"duplicate field", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"1","a":"2"}}`},
		{"unknown field in a ScaledObject", `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"x"},"spec":{"scaleTargetRef":{"name":"c"},"minReplicas":1,"triggers":[]}}`},
		{"unknown field in a ServiceMonitor", `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"x"},"spec":{"endpoints":[{"targetPort":"http","scrapeEvery":"5s"}],"selector":{}}}`},
		{"unknown field in a RabbitmqCluster", `{"apiVersion":"rabbitmq.com/v1beta1","kind":"RabbitmqCluster","metadata":{"name":"x"},"spec":{"replicas":3,"quorumQueues":true}}`},
		{"wrong type in a CloudNativePG Cluster", `{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"name":"x"},"spec":{"instances":"3"}}`},
		{"unknown field in a RedisCluster", `{"apiVersion":"redis.redis.opstreelabs.in/v1beta2","kind":"RedisCluster","metadata":{"name":"x"},"spec":{"clusterSize":3,"kubernetesConfig":{"image":"r"},"masters":3}}`},
		{"unknown field in an HTTPRoute", `{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"x"},"spec":{"hostname":"a"}}`},
		{"kind without a Go type", `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"x"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := new(manifests).decode([][]byte{[]byte(c.obj)}); err == nil {
				t.Errorf("decoded without error: %s", c.obj)
			}
		})
	}
}
