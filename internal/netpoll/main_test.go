package netpoll

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if goroutines outlive the tests (the waker
// goroutines of the wake-up tests are waited for); internal/archtest
// checks that every package with tests has this.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
