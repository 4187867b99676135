package fleet_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestUnplacedAndRemove: a start refused for lack of capacity is listed by
// Unplaced (Current) until a host becomes ready (then it waits for its
// retry) and leaves the list when placed; Remove refuses a host with
// instances, and forgets an empty one: status, store and placement.
func TestUnplacedAndRemove(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	h1 := s.join(t, "h1", "a", 1, 0)
	waitState(t, s.fleet, api.HostReady, "h1")
	web := s.fleet.Host("web")
	if _, err := web.Start(ctx, s.spec(t, "web", "web-1", 0.75, 0)); err != nil {
		t.Fatal(err)
	}
	_, err := web.Start(ctx, s.spec(t, "web", "web-2", 0.5, 0))
	if !errors.Is(err, controller.ErrNoCapacity) {
		t.Fatalf("start beyond capacity: %v", err)
	}
	un := s.fleet.Unplaced()
	if len(un) != 1 || un[0].Instance != "web-2" || un[0].App != "web" || un[0].CPU != 0.5 || !un[0].Current {
		t.Fatalf("Unplaced = %+v", un)
	}

	// A new host: the refusal is no longer current; placed, it is gone.
	s.join(t, "h2", "a", 1, 0)
	waitState(t, s.fleet, api.HostReady, "h2")
	if un := s.fleet.Unplaced(); len(un) != 1 || un[0].Current {
		t.Fatalf("after h2 joined: Unplaced = %+v", un)
	}
	r, err := web.Start(ctx, s.spec(t, "web", "web-2", 0.5, 0))
	if err != nil || r.Host != "h2" {
		t.Fatalf("start on h2: %+v %v", r, err)
	}
	if un := s.fleet.Unplaced(); len(un) != 0 {
		t.Fatalf("after the start: Unplaced = %+v", un)
	}

	// Remove: refused while h1 runs web-1; done once it is stopped.
	if err := s.fleet.Remove("h1"); err == nil || !strings.Contains(err.Error(), "1 instances are still placed on it") {
		t.Fatalf("remove a host with an instance: %v", err)
	}
	if err := web.Stop(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error { return s.fleet.Remove("h1") }) // once its exit is in
	if st := status(s.fleet, "h1"); st.Name != "" {
		t.Errorf("h1 still in status: %+v", st)
	}
	recs, err := s.store.Hosts().List()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Name == "h1" {
			t.Errorf("h1 still stored: %+v", r)
		}
	}
	if err := s.eventWith("host h1 removed from the fleet"); err != nil {
		t.Error(err)
	}
	if err := s.fleet.Remove("h1"); !errors.Is(err, fleet.ErrUnknownHost) {
		t.Errorf("remove again: %v", err)
	}
	// Placement no longer sees h1: a start that fits only a free host
	// goes to h2 or is refused naming h2 only.
	_, err = web.Start(ctx, s.spec(t, "web", "web-3", 0.75, 0))
	var nc *fleet.NoCapacityError
	if !errors.As(err, &nc) || strings.Contains(err.Error(), "h1") {
		t.Errorf("start after removing h1: %v", err)
	}
	h1.close()
}
