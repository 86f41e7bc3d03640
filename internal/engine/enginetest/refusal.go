package enginetest

import (
	"slices"
	"strings"
	"testing"
)

// CheckRefusal wants err to name refusal (one of its |-separated
// alternatives, each a substring of the error), or nil when refusal is
// empty: the check of a client an engine must refuse, or accept.
func CheckRefusal(t testing.TB, what string, err error, refusal string) {
	t.Helper()
	switch {
	case refusal == "" && err != nil:
		t.Errorf("%s: refused, want accepted: %v", what, err)
	case refusal != "" && err == nil:
		t.Errorf("%s: accepted, want refused (%s)", what, refusal)
	case refusal != "" && !slices.ContainsFunc(strings.Split(refusal, "|"), func(r string) bool { return strings.Contains(err.Error(), r) }):
		t.Errorf("%s: refused with %v, want %q", what, err, refusal)
	case err == nil:
		t.Logf("%s: accepted", what)
	default:
		t.Logf("%s: refused: %v", what, err)
	}
}
