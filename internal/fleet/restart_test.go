package fleet_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestRestartedServerAdoptsAndKeepsTheFence restarts the server's fleet
// (a new Fleet over the same store) twice: the first time it adopts what
// runs; the second time, after the host was lost, it still knows the
// host's generation and stops the stale instances when the host answers.
func TestRestartedServerAdoptsAndKeepsTheFence(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s := newServer(t)
	h1 := s.join(t, "h1", "a", 0, 0)
	waitState(t, s.fleet, api.HostReady, "h1")
	for _, id := range []string{"web-0", "web-1"} {
		if _, err := s.fleet.Host("web").Start(ctx, s.spec(t, "web", id, 0.25, 0)); err != nil {
			t.Fatal(err)
		}
	}

	s.stop()
	second := s.newFleet(t)
	stopSecond := s.run(t, second)
	web := second.Host("web")
	if err := second.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	adopted, err := second.Adopt(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range adopted {
		ids = append(ids, in.ID+"@"+in.Host)
		if in.CPU != 0.25 {
			t.Errorf("adopted %s declares %v CPU, want 0.25", in.ID, in.CPU)
		}
	}
	if !slices.Equal(ids, []string{"web-0@h1", "web-1@h1"}) {
		t.Fatalf("adopted %v", ids)
	}
	if st := status(second, "h1"); st.State != api.HostReady || st.Instances != 2 || st.UsedCPU != 0.5 {
		t.Fatalf("h1 after the restart: %+v", st)
	}

	// The restarted fleet loses the host: the adopted instances are
	// reported ended to their app, and generation 1 is stored.
	h1.unplug()
	for range 2 {
		if e := nextExit(t, ctx, web.Exits()); !strings.HasPrefix(e.Reason, "host h1 unreachable for ") {
			t.Fatalf("exit %+v, want the host's loss", e)
		}
	}
	stopSecond()

	third := s.newFleet(t)
	s.run(t, third)
	if st := status(third, "h1"); st.Generation != 1 || st.State != api.HostJoining {
		t.Fatalf("h1 as the third fleet loads it: %+v", st)
	}
	h1.plug()
	if err := third.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, third, api.HostReady, "h1")
	if got := h1.running(); len(got) != 0 {
		t.Fatalf("h1 still runs %v after the fence", got)
	}
	if adopted, err := third.Adopt(ctx, "web"); err != nil || len(adopted) != 0 {
		t.Fatalf("adopted %+v, %v after the fence", adopted, err)
	}
}
