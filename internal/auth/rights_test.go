package auth

import (
	"slices"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"b/", "a/", "a/x", "b/"}, []string{"a/", "b/"}},
		{[]string{"a/x", "", "z"}, []string{""}},
		{[]string{"ab", "a"}, []string{"a"}},
		{[]string{"a/", "a"}, []string{"a"}},
		{[]string{"a/b/c", "a/b", "a/c"}, []string{"a/b", "a/c"}},
	} {
		if got := normalize(tc.in); !slices.Equal([]string(got), tc.want) {
			t.Errorf("normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIntersect(t *testing.T) {
	for _, tc := range []struct{ a, b, want []string }{
		{[]string{""}, []string{"x/"}, []string{"x/"}},
		{[]string{"x/"}, []string{""}, []string{"x/"}},
		{[]string{"a/"}, []string{"b/"}, nil},
		{[]string{"a/", "b/"}, []string{"a/1", "b/", "c/"}, []string{"a/1", "b/"}},
		{nil, []string{""}, nil},
	} {
		got := normalize(tc.a).intersect(normalize(tc.b))
		if !slices.Equal([]string(got), tc.want) {
			t.Errorf("%q ∩ %q = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

// The intersection grants exactly the keys both sets grant, on every key
// made of the prefixes' letters.
func TestIntersectAgreesWithCovers(t *testing.T) {
	sets := [][]string{nil, {""}, {"a"}, {"ab"}, {"b"}, {"a", "ba"}, {"aa", "ab"}, {"abb", "b"}}
	keys := []string{"a", "aa", "ab", "aab", "abb", "b", "ba", "bab", "c"}
	for _, a := range sets {
		for _, b := range sets {
			pa, pb := normalize(a), normalize(b)
			both := pa.intersect(pb)
			for _, k := range keys {
				if got, want := both.covers(k), pa.covers(k) && pb.covers(k); got != want {
					t.Errorf("%q ∩ %q covers %q = %v, want %v", a, b, k, got, want)
				}
			}
		}
	}
}

func TestRightNames(t *testing.T) {
	for r := range rightCount {
		got, ok := parseRight(r.String())
		if !ok || got != r {
			t.Errorf("parseRight(%q) = %v, %v", r.String(), got, ok)
		}
	}
	if !strings.HasPrefix(Right(9).String(), "Right(") {
		t.Errorf("Right(9) = %s", Right(9))
	}
	var none Rights
	if none.Allows(Read, "x") || none.Allows(Right(9), "x") || none.Listable() != nil {
		t.Error("the zero Rights grant something")
	}
}
