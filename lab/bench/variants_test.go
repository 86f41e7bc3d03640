package bench

import (
	"slices"
	"testing"
)

func TestVariantsKeepsTheNamedOnes(t *testing.T) {
	names := func(vs []variant) []string {
		var out []string
		for _, v := range vs {
			out = append(out, v.name)
		}
		return out
	}
	h := &harness{}
	if got := names(h.variants()); len(got) != len(apiVariants) {
		t.Errorf("no -variants: %v, want every variant", got)
	}
	h.o.Variants = []string{"as-shipped-run-by-the-harness", colAuthOff}
	h.o.CompareAPI = "/tmp/api"
	if got, want := names(h.variants()), []string{colHarness, colAuthOff, colCompare}; !slices.Equal(got, want) {
		t.Errorf("variants %v: %v, want %v", h.o.Variants, got, want)
	}
	if err := CheckVariants(h.o.Variants); err != nil {
		t.Error(err)
	}
	if err := CheckVariants([]string{"tracing of"}); err == nil {
		t.Error(`CheckVariants("tracing of") = nil, want an error`)
	}
}
