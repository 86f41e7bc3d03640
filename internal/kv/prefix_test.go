package kv

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct {
		prefix, end string
		ok          bool
	}{
		{"", "", false},
		{"a", "b", true},
		{"team-a/", "team-a0", true},
		{"é", "ê", true},
		{"a\U0010FFFF", "b", true},
		{"\U0010FFFF", "", false},
		{"x\uD7FF", "x\uE000", true},
	} {
		end, ok := PrefixEnd(tc.prefix)
		if end != tc.end || ok != tc.ok {
			t.Errorf("PrefixEnd(%q) = %q, %v; want %q, %v", tc.prefix, end, ok, tc.end, tc.ok)
		}
	}
}

// Every key under a prefix lies in [prefix, end), and a key just past
// the prefix's keys does not.
func FuzzPrefixEnd(f *testing.F) {
	for _, s := range []string{"a", "team/", "é\U0010FFFF", "z"} {
		f.Add(s, "tail")
	}
	f.Fuzz(func(t *testing.T, prefix, other string) {
		if !utf8.ValidString(prefix) || !utf8.ValidString(other) {
			return
		}
		end, ok := PrefixEnd(prefix)
		if !ok {
			return
		}
		if !utf8.ValidString(end) {
			t.Fatalf("PrefixEnd(%q) = %q: not UTF-8", prefix, end)
		}
		key := prefix + other
		if key < prefix || key >= end {
			t.Fatalf("key %q under %q is outside [%q, %q)", key, prefix, prefix, end)
		}
		if other >= prefix && other < end && !strings.HasPrefix(other, prefix) {
			t.Fatalf("%q lies in [%q, %q) but does not start with the prefix", other, prefix, end)
		}
	})
}
