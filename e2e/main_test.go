// Package e2e holds end-to-end tests that build the real shoal binary once
// (testenv.BuildShoal) and run it as a process against backends on
// 127.0.0.1: among them the balancer (lb_test.go) and stickiness with real
// long-polling socket.io and SockJS clients (sticky_test.go, which needs
// node and npm and skips without them).
//
// This file owns TestMain for the package; other test files here must not
// define one.
package e2e

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestMain removes the binary built by testenv.BuildShoal after the
// tests, and fails the run when a goroutine outlives them.
// With E2E_CHILD set, the test binary is a program a test started (see
// e2eChild) rather than the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("E2E_CHILD"); mode != "" {
		e2eChild(mode)
		return
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		testenv.Cleanup()
		os.Exit(code)
	}))
}
