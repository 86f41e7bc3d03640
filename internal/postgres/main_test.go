package postgres_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The pools start health-check and connection goroutines; every test must
// close what it opens.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
