package k8s

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
)

// The built-in kinds are checked against the OpenAPI v3 schema that the
// API server of MinKubeVersion publishes (kubernetes/kubernetes
// api/openapi-spec/v3 at v1.33, as kubernetes-sigs/kubectl-validate keeps
// it in pkg/openapiclient/builtins/1.33; testdata/openapi/v1.33, one file
// per API group the chart uses, unchanged but compressed). A field that
// release does not know, a wrong type or a missing required field fails:
// what the Go types of a newer k8s.io/api would let through. (The
// published schema holds no enums: the API server checks those in its Go
// validation, which no schema carries.)
const openAPIDir = "testdata/openapi/v1.33"

type builtinSchema struct {
	name      string
	props     map[string]any // the schema, every $ref resolved
	validator apiservervalidation.SchemaValidator
}

var (
	openAPIOnce sync.Once
	openAPIMap  map[schema.GroupVersionKind]*builtinSchema
	openAPIErr  error
)

func builtinSchemas(t testing.TB) map[schema.GroupVersionKind]*builtinSchema {
	t.Helper()
	openAPIOnce.Do(func() { openAPIMap, openAPIErr = loadOpenAPI() })
	if openAPIErr != nil {
		t.Fatal(openAPIErr)
	}
	return openAPIMap
}

func loadOpenAPI() (map[schema.GroupVersionKind]*builtinSchema, error) {
	files, err := filepath.Glob(filepath.Join(openAPIDir, "*.json.gz"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("%s: no schema (%v)", openAPIDir, err)
	}
	defs := map[string]any{}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(zr)
		r.Close()
		if err != nil {
			return nil, err
		}
		var doc struct {
			Components struct {
				Schemas map[string]any `json:"schemas"`
			} `json:"components"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		maps.Copy(defs, doc.Components.Schemas)
	}
	out := map[schema.GroupVersionKind]*builtinSchema{}
	for name, raw := range defs {
		def, _ := raw.(map[string]any)
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		if len(gvks) != 1 {
			continue
		}
		g := gvks[0].(map[string]any)
		gvk := schema.GroupVersionKind{Group: fmt.Sprint(g["group"]), Version: fmt.Sprint(g["version"]), Kind: fmt.Sprint(g["kind"])}
		resolved, err := resolveRefs(def, defs, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		props := resolved.(map[string]any)
		j, _ := json.Marshal(props)
		var v1 apiextensionsv1.JSONSchemaProps
		if err := json.Unmarshal(j, &v1); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		var internal apiextensions.JSONSchemaProps
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(&v1, &internal, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		validator, _, err := apiservervalidation.NewSchemaValidator(&internal)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[gvk] = &builtinSchema{name: name, props: props, validator: validator}
	}
	return out, nil
}

// resolveRefs inlines every $ref (and the allOf of one $ref the v3 schema
// wraps them in, keeping the wrapper's default and description).
func resolveRefs(node any, defs map[string]any, depth int) (any, error) {
	if depth > 64 {
		return nil, fmt.Errorf("$ref nesting deeper than 64")
	}
	switch n := node.(type) {
	case map[string]any:
		if ref, ok := n["$ref"].(string); ok {
			target, ok := defs[strings.TrimPrefix(ref, "#/components/schemas/")]
			if !ok {
				return nil, fmt.Errorf("unknown $ref %s", ref)
			}
			return resolveRefs(target, defs, depth+1)
		}
		if all, ok := n["allOf"].([]any); ok && len(all) == 1 {
			inner, err := resolveRefs(all[0], defs, depth+1)
			if err != nil {
				return nil, err
			}
			merged := maps.Clone(inner.(map[string]any))
			for k, v := range n {
				if k != "allOf" {
					merged[k] = v
				}
			}
			return merged, nil
		}
		out := map[string]any{}
		for k, v := range n {
			if k == "description" || strings.HasPrefix(k, "x-kubernetes-patch") || k == "x-kubernetes-group-version-kind" || k == "x-kubernetes-unions" {
				continue
			}
			r, err := resolveRefs(v, defs, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		var out []any
		for _, v := range n {
			r, err := resolveRefs(v, defs, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	}
	return node, nil
}

// unknownFields lists the fields of obj its schema does not have.
func unknownFields(path *field.Path, obj any, s map[string]any) []string {
	if s["x-kubernetes-preserve-unknown-fields"] == true {
		return nil
	}
	var out []string
	switch o := obj.(type) {
	case map[string]any:
		props, hasProps := s["properties"].(map[string]any)
		extra, _ := s["additionalProperties"].(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(o)) {
			switch sub, ok := props[k].(map[string]any); {
			case ok:
				out = append(out, unknownFields(path.Child(k), o[k], sub)...)
			case extra != nil:
				out = append(out, unknownFields(path.Key(k), o[k], extra)...)
			case hasProps:
				out = append(out, path.Child(k).String())
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, v := range o {
				out = append(out, unknownFields(path.Index(i), v, items)...)
			}
		}
	}
	return out
}

// Every built-in object of every variant, hooks included, is one the API
// server of MinKubeVersion accepts by its OpenAPI schema.
func TestBuiltinsPassTheMinimumKubernetesSchema(t *testing.T) {
	schemas := builtinSchemas(t)
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			objs, err := build(v)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]bool{}
			for _, j := range objs {
				var obj map[string]any
				if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &obj); err != nil {
					t.Fatal(err)
				}
				gvk := gvkOf(obj)
				if !builtinGroups[gvk.Group] {
					continue
				}
				kinds[gvk.Kind] = true
				s, ok := schemas[gvk]
				if !ok {
					t.Errorf("%s: Kubernetes %s serves no such kind", gvk, MinKubeVersion)
					continue
				}
				name := obj["metadata"].(map[string]any)["name"]
				for _, e := range validateBuiltin(s, obj) {
					t.Errorf("%s %s: %s", gvk.Kind, name, e)
				}
			}
			got := slices.Collect(maps.Keys(kinds))
			sort.Strings(got)
			t.Logf("validated against Kubernetes %s: %v", MinKubeVersion, got)
		})
	}
}

func validateBuiltin(s *builtinSchema, obj map[string]any) []string {
	var out []string
	for _, f := range unknownFields(nil, obj, s.props) {
		out = append(out, f+": unknown field in Kubernetes "+MinKubeVersion)
	}
	for _, e := range apiservervalidation.ValidateCustomResource(nil, obj, s.validator) {
		out = append(out, e.Error())
	}
	return out
}

// The schema refuses what the Kubernetes release would: a field it does
// not know, a wrong type, a missing required one.
func TestBuiltinSchemaCatches(t *testing.T) {
	schemas := builtinSchemas(t)
	objs, err := build("prod")
	if err != nil {
		t.Fatal(err)
	}
	find := func(kind, name string) map[string]any {
		for _, j := range objs {
			var obj map[string]any
			if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &obj); err != nil {
				t.Fatal(err)
			}
			if obj["kind"] == kind && obj["metadata"].(map[string]any)["name"] == name {
				return obj
			}
		}
		t.Fatalf("no %s %s", kind, name)
		return nil
	}
	podSpec := func(o map[string]any) map[string]any {
		return o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	}
	container := func(o map[string]any) map[string]any { return podSpec(o)["containers"].([]any)[0].(map[string]any) }
	cases := []struct {
		name, kind, obj string
		breakIt         func(o map[string]any)
	}{
		{"a field Kubernetes 1.33 does not have", "Deployment", "kvstack-api", func(o map[string]any) { podSpec(o)["hostUsers2"] = true }},
		{"a misspelt probe field", "Deployment", "kvstack-consumer", func(o map[string]any) {
			container(o)["readinessProbe"].(map[string]any)["periodSecond"] = int64(5)
		}},
		{"a port as a word", "Service", "kvstack-api", func(o map[string]any) {
			o["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)["port"] = "http"
		}},
		{"autoscaling bounds of the wrong type", "HorizontalPodAutoscaler", "kvstack-api", func(o map[string]any) {
			o["spec"].(map[string]any)["maxReplicas"] = "ten"
		}},
		{"a container without a name (required)", "Job", "kvstack-migrate", func(o map[string]any) { delete(container(o), "name") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj := find(c.kind, c.obj)
			s := schemas[gvkOf(obj)]
			if got := validateBuiltin(s, obj); len(got) > 0 {
				t.Fatalf("intact %s %s already fails: %v", c.kind, c.obj, got)
			}
			c.breakIt(obj)
			got := validateBuiltin(s, obj)
			if len(got) == 0 {
				t.Error("accepted")
			}
			for _, e := range got {
				t.Log(e)
			}
		})
	}
}
