package acme

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if goroutines outlive the tests; internal/archtest
// checks that every package with tests has this.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
