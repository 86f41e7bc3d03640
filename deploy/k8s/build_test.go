package k8s

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
)

var overlays = []string{"dev", "prod"}

// build runs kustomize on an overlay: its YAML, and each object as JSON.
func build(overlay string) ([]byte, [][]byte, error) {
	m, err := Build(filepath.Join("overlays", overlay))
	if err != nil {
		return nil, nil, err
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, nil, err
	}
	var objs [][]byte
	for _, r := range m.Resources() {
		j, err := r.MarshalJSON()
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, j)
	}
	return out, objs, nil
}

// manifests are an overlay's objects, each in its real type.
type manifests struct {
	overlay         string
	namespaces      []*corev1.Namespace
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	ingresses       []*networkingv1.Ingress
	netpols         []*networkingv1.NetworkPolicy
	scaledObjects   []*kedav1alpha1.ScaledObject
	triggerAuths    []*kedav1alpha1.TriggerAuthentication
	serviceMonitors []*monitoringv1.ServiceMonitor
	podMonitors     []*monitoringv1.PodMonitor
	rules           []*monitoringv1.PrometheusRule
	amConfigs       []*monitoringv1alpha1.AlertmanagerConfig
	rabbitmqs       []*RabbitmqCluster
	postgreses      []*PostgresCluster
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
		gvk("v1", "Namespace"):                                      func() any { return add(&m.namespaces) },
		gvk("v1", "Service"):                                        func() any { return add(&m.services) },
		gvk("v1", "ConfigMap"):                                      func() any { return add(&m.configMaps) },
		gvk("v1", "Secret"):                                         func() any { return add(&m.secrets) },
		gvk("apps/v1", "Deployment"):                                func() any { return add(&m.deployments) },
		gvk("policy/v1", "PodDisruptionBudget"):                     func() any { return add(&m.pdbs) },
		gvk("autoscaling/v2", "HorizontalPodAutoscaler"):            func() any { return add(&m.hpas) },
		gvk("networking.k8s.io/v1", "Ingress"):                      func() any { return add(&m.ingresses) },
		gvk("networking.k8s.io/v1", "NetworkPolicy"):                func() any { return add(&m.netpols) },
		gvk("keda.sh/v1alpha1", "ScaledObject"):                     func() any { return add(&m.scaledObjects) },
		gvk("keda.sh/v1alpha1", "TriggerAuthentication"):            func() any { return add(&m.triggerAuths) },
		gvk("monitoring.coreos.com/v1", "ServiceMonitor"):           func() any { return add(&m.serviceMonitors) },
		gvk("monitoring.coreos.com/v1", "PodMonitor"):               func() any { return add(&m.podMonitors) },
		gvk("monitoring.coreos.com/v1", "PrometheusRule"):           func() any { return add(&m.rules) },
		gvk("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): func() any { return add(&m.amConfigs) },
		gvk("rabbitmq.com/v1beta1", "RabbitmqCluster"):              func() any { return add(&m.rabbitmqs) },
		gvk("postgresql.cnpg.io/v1", "Cluster"):                     func() any { return add(&m.postgreses) },
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

// mustBuild builds and decodes an overlay afresh, so a test may change the
// result.
func mustBuild(t testing.TB, overlay string) *manifests {
	t.Helper()
	_, objs, err := build(overlay)
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", overlay, err)
	}
	m := &manifests{overlay: overlay}
	if err := m.decode(objs); err != nil {
		t.Fatalf("overlays/%s: %v", overlay, err)
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

func (m *manifests) service(name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// configMap finds a ConfigMap by its name in the kustomization, with or
// without the content hash kustomize appends.
func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for _, c := range m.configMaps {
		if c.Name == name || (strings.HasPrefix(c.Name, name+"-") && len(c.Name) == len(name)+11) {
			return c
		}
	}
	return nil
}

// TestBuildDecodesStrictly builds every overlay and decodes each object
// into its real type.
func TestBuildDecodesStrictly(t *testing.T) {
	for _, o := range overlays {
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
