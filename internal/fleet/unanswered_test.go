package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestUnansweredStartStopped (issue 14): a start whose answer never comes
// (the agent ran the instance; its connection closed before the answer)
// and whose quiet stop then fails leaves an instance its app does not know
// running on a host that stays up. The fleet lists the host again, and its
// sweep stops the instance; the host is not declared lost. (Before, the
// instance ran on until the host's next list, which a host that stays up
// never had: TestSmallFleet under load found such instances still running
// after its server's shutdown.)
func TestUnansweredStartStopped(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	h := s.join(t, "h1", "a", 4, 256*mib)
	waitState(t, s.fleet, api.HostReady, "h1")

	h.dropStart.Store(true)
	h.failStop.Store(true)
	_, err := s.fleet.Host("web").Start(ctx, s.spec(t, "web", "web-0", 0.5, 64*mib))
	if nc := (*fleet.NoCapacityError)(nil); !errors.As(err, &nc) {
		t.Fatalf("a start whose answer was lost on the only host: %v, want no capacity", err)
	}
	if h.dropStart.Load() || h.failStop.Load() {
		t.Fatal("the start's answer was not dropped, or no stop followed it")
	}
	// Bounded below the test's time: without the fix nothing ever stops
	// it, and the test says so.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := testenv.WaitFor(wctx, func() error {
		if got := h.running(); len(got) != 0 {
			return fmt.Errorf("h1 runs %v, which no app knows", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := s.countEvents("unreachable"); n > 0 {
		t.Fatalf("%d events of h1 unreachable", n)
	}
	waitState(t, s.fleet, api.HostReady, "h1")
}

// TestFailedStopStopped (issue 14): a stop the agent fails (a loaded host
// that does not answer in time, at a server's shutdown: TestSmallFleet)
// is an error to the app, which forgets the instance; the fleet marks it
// stale and lists its host again, and its sweep stops it.
func TestFailedStopStopped(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	h := s.join(t, "h1", "a", 4, 256*mib)
	waitState(t, s.fleet, api.HostReady, "h1")
	web := s.fleet.Host("web")
	if _, err := web.Start(ctx, s.spec(t, "web", "web-0", 0.5, 64*mib)); err != nil {
		t.Fatal(err)
	}
	h.failStop.Store(true)
	if err := web.Stop(ctx, "web-0"); err == nil {
		t.Fatal("a stop the agent failed returned nil")
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := testenv.WaitFor(wctx, func() error {
		if got := h.running(); len(got) != 0 {
			return fmt.Errorf("h1 runs %v, whose stop failed", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := s.countEvents("unreachable"); n > 0 {
		t.Fatalf("%d events of h1 unreachable", n)
	}
}
