package bench

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kvstack/kvstack/lab/native"
)

// The production-sampling column runs the sampler kvstack ships
// (native.ProductionSampler, which deploy/composetest holds the compose
// files and the Helm chart to), is named after its ratio, and its
// consumer gets that share of the apply's messages sampled.
func TestSampledColumnIsTheProductionSampler(t *testing.T) {
	var v variant
	for _, a := range apiVariants {
		if a.name == colSampled {
			v = a
		}
	}
	if !slices.Equal(v.env, native.ProductionSampler) {
		t.Errorf("%q runs %q, production ships %q", colSampled, v.env, native.ProductionSampler)
	}
	if want := fmt.Sprintf("%g %% sampling", productionRatio*100); colSampled != want {
		t.Errorf("the column is %q, the shipped ratio makes it %q", colSampled, want)
	}
	if !slices.ContainsFunc(consumerVariants, func(c variant) bool { return c.name == colSampled }) {
		t.Errorf("the consumer's variants lack %q", colSampled)
	}
	for _, d := range (&harness{o: Options{}}).drainers(1, 1) {
		if d.name == colSampled && d.sampled != productionRatio {
			t.Errorf("%q's messages are sampled at %v, production samples %v", colSampled, d.sampled, productionRatio)
		}
	}
}
