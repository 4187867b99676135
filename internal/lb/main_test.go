package lb

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if goroutines outlive the tests (every balancer
// in a test is stopped by its cleanup); internal/archtest checks that
// every package with tests has this.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
