package k8s

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// operatorCRDs are the CustomResourceDefinitions of the operator versions
// the chart is made for, as each project publishes them at that tag
// (testdata/crds/<operator>-<version>.yaml.gz, unchanged but compressed):
//
//	rabbitmq/cluster-operator          v2.22.3  config/crd/bases
//	rabbitmq/messaging-topology-operator v1.20.1 config/crd/bases (users, permissions)
//	cloudnative-pg/cloudnative-pg      v1.30.0  config/crd/bases (clusters, scheduledbackups)
//	cloudnative-pg/plugin-barman-cloud v0.14.0  config/crd/bases
//	OT-CONTAINER-KIT/redis-operator    v0.26.0  config/crd/bases
//	kedacore/keda                      v2.21.0  config/crd/bases
//	prometheus-operator                v0.93.0  example/prometheus-operator-crd
//	kubernetes-sigs/gateway-api        v1.6.3   config/crd/standard
//	cert-manager/cert-manager          v1.21.1  deploy/crds (certificates, issuers)
//
// (prometheus-operator's Go types are v0.95.2; its CRDs are read at
// v0.93.0, the newest tag at hand: the fields the chart sets are in both.)
var operatorCRDs = []string{
	"rabbitmq-cluster-operator-v2.22.3",
	"messaging-topology-operator-v1.20.1",
	"cloudnative-pg-v1.30.0",
	"cloudnative-pg-scheduledbackups-v1.30.0",
	"plugin-barman-cloud-v0.14.0",
	"redis-operator-v0.26.0",
	"keda-v2.21.0",
	"prometheus-operator-v0.93.0",
	"gateway-api-v1.6.3-standard",
	"cert-manager-v1.21.1",
	"cert-manager-issuers-v1.21.1",
}

// crdSchema is one served version of a CRD, ready to validate as the API
// server does.
type crdSchema struct {
	crd        string
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

var (
	crdOnce sync.Once
	crdMap  map[schema.GroupVersionKind]*crdSchema
	crdErr  error
)

// crdSchemas loads every CRD once: its structural schema (a CRD whose
// schema is not structural is an error, as the API server refuses it), its
// OpenAPI validator and its CEL rules.
func crdSchemas(t testing.TB) map[schema.GroupVersionKind]*crdSchema {
	t.Helper()
	crdOnce.Do(func() { crdMap, crdErr = loadCRDs() })
	if crdErr != nil {
		t.Fatal(crdErr)
	}
	return crdMap
}

func loadCRDs() (map[schema.GroupVersionKind]*crdSchema, error) {
	out := map[schema.GroupVersionKind]*crdSchema{}
	for _, name := range operatorCRDs {
		f, err := os.Open(filepath.Join("testdata", "crds", name+".yaml.gz"))
		if err != nil {
			return nil, err
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			return nil, err
		}
		for _, doc := range bytes.Split(data, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 || bytes.Equal(bytes.TrimSpace(doc), []byte("---")) {
				continue
			}
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.Unmarshal(doc, &crd); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
					continue
				}
				var internal apiextensions.JSONSchemaProps
				if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
					return nil, fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
				}
				s, err := structuralschema.NewStructural(&internal)
				if err != nil {
					return nil, fmt.Errorf("%s %s: not a structural schema: %w", crd.Name, v.Name, err)
				}
				if errs := structuralschema.ValidateStructural(nil, s); len(errs) > 0 {
					return nil, fmt.Errorf("%s %s: not a structural schema: %v", crd.Name, v.Name, errs.ToAggregate())
				}
				validator, _, err := apiservervalidation.NewSchemaValidator(&internal)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
				}
				gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
				out[gvk] = &crdSchema{crd: name + " " + crd.Name, structural: s, validator: validator,
					cel: cel.NewValidator(s, true, celconfig.PerCallLimit)}
			}
		}
	}
	return out, nil
}

// validateCustomResource does to obj what the API server does to a custom
// resource it is asked to create with strict field validation: unknown
// fields are errors (the pruning would drop them), then defaults are
// applied, and the object must pass the schema (types, formats, enums,
// bounds, patterns, required fields), its list types, and its CEL rules
// (x-kubernetes-validations), within the API server's cost budget.
func validateCustomResource(ctx context.Context, s *crdSchema, obj map[string]any) field.ErrorList {
	var errs field.ErrorList
	for _, path := range structuralpruning.PruneWithOptions(obj, s.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		errs = append(errs, field.Invalid(field.NewPath(path), "", "unknown field"))
	}
	structuraldefaulting.Default(obj, s.structural)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, obj, s.validator)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, s.structural, obj)...)
	celErrs, _ := s.cel.Validate(ctx, nil, s.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// customResources are a variant's objects of kinds that are not
// Kubernetes' own, decoded as the API server receives them.
func customResources(t testing.TB, variant string) []map[string]any {
	t.Helper()
	objs, err := build(variant)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, j := range objs {
		// As the API server decodes a request: integers stay integers.
		var obj map[string]any
		if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &obj); err != nil {
			t.Fatal(err)
		}
		if !builtinGroups[gvkOf(obj).Group] {
			out = append(out, obj)
		}
	}
	return out
}

// builtinGroups are the API groups of Kubernetes' own kinds the chart uses.
var builtinGroups = map[string]bool{"": true, "apps": true, "batch": true, "policy": true, "autoscaling": true, "networking.k8s.io": true}

func gvkOf(obj map[string]any) schema.GroupVersionKind {
	gv, _ := schema.ParseGroupVersion(fmt.Sprint(obj["apiVersion"]))
	return gv.WithKind(fmt.Sprint(obj["kind"]))
}

// Every custom resource of every variant passes its operator's CRD as the
// API server would check it, CEL rules included.
func TestCustomResourcesPassTheirCRDs(t *testing.T) {
	crds := crdSchemas(t)
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			n := 0
			for _, obj := range customResources(t, v) {
				gvk := gvkOf(obj)
				s, ok := crds[gvk]
				if !ok {
					t.Errorf("%s: no CRD of the pinned operators serves it", gvk)
					continue
				}
				n++
				name := fmt.Sprint(obj["metadata"].(map[string]any)["name"])
				for _, e := range validateCustomResource(context.Background(), s, obj) {
					t.Errorf("%s %s (%s): %v", gvk.Kind, name, s.crd, e)
				}
			}
			if n == 0 {
				t.Error("no custom resource validated")
			}
		})
	}
}

// The validation finds what the API server would refuse: a broken copy of
// a rendered resource fails it, through the schema, the pruning of unknown
// fields, and the CEL rules.
func TestCRDValidationCatches(t *testing.T) {
	crds := crdSchemas(t)
	find := func(t *testing.T, variant, kind string) map[string]any {
		for _, obj := range customResources(t, variant) {
			if obj["kind"] == kind {
				return obj
			}
		}
		t.Fatalf("values/%s.yaml renders no %s", variant, kind)
		return nil
	}
	spec := func(obj map[string]any) map[string]any { return obj["spec"].(map[string]any) }
	cases := []struct {
		name, variant, kind, want string
		breakIt                   func(obj map[string]any)
	}{
		{"a rule whose backend waits longer than the request (CEL)", "prod", "HTTPRoute", "backendRequest", func(o map[string]any) {
			rule := spec(o)["rules"].([]any)[0].(map[string]any)
			rule["timeouts"] = map[string]any{"request": "10s", "backendRequest": "35s"}
		}},
		{"a hostname that is no host (pattern)", "dev", "HTTPRoute", "hostnames", func(o map[string]any) {
			spec(o)["hostnames"] = []any{"not a host"}
		}},
		{"an unknown field in a Cluster (pruned)", "prod", "Cluster", "unknown field", func(o map[string]any) {
			spec(o)["replicas"] = int64(3)
		}},
		{"no instance (minimum)", "dev", "Cluster", "instances", func(o map[string]any) { spec(o)["instances"] = int64(0) }},
		{"a negative number of RabbitMQ nodes (minimum)", "prod", "RabbitmqCluster", "replicas", func(o map[string]any) {
			spec(o)["replicas"] = int64(-1)
		}},
		{"a RedisCluster without its image (required)", "prod", "RedisCluster", "image", func(o map[string]any) {
			delete(spec(o)["kubernetesConfig"].(map[string]any), "image")
		}},
		{"a ScaledObject of a wrong type", "dev", "ScaledObject", "minReplicaCount", func(o map[string]any) { spec(o)["minReplicaCount"] = "one" }},
		{"a ScheduledBackup by an unknown method (enum)", "prod", "ScheduledBackup", "method", func(o map[string]any) { spec(o)["method"] = "pgbackrest" }},
		{"an ObjectStore naming a serverName (CEL)", "prod", "ObjectStore", "serverName", func(o map[string]any) {
			spec(o)["configuration"].(map[string]any)["serverName"] = "kvstack-pg"
		}},
		{"a retention in hours (pattern)", "prod", "ObjectStore", "retentionPolicy", func(o map[string]any) { spec(o)["retentionPolicy"] = "48h" }},
		{"a Certificate without its Secret (required)", "prod", "Certificate", "secretName", func(o map[string]any) { delete(spec(o), "secretName") }},
		{"a PodMonitor relabelling with an unknown action (enum)", "prod", "PodMonitor", "action", func(o map[string]any) {
			ep := spec(o)["podMetricsEndpoints"].([]any)[0].(map[string]any)
			ep["relabelings"].([]any)[0].(map[string]any)["action"] = "rename"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj := find(t, c.variant, c.kind)
			s := crds[gvkOf(obj)]
			if s == nil {
				t.Fatalf("no CRD for %s", gvkOf(obj))
			}
			c.breakIt(obj)
			errs := validateCustomResource(context.Background(), s, obj)
			if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), c.want) {
				t.Errorf("errors %v, want one about %s", errs, c.want)
			}
			for _, e := range errs {
				t.Log(e)
			}
		})
	}
}
