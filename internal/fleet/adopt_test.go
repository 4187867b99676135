package fleet_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// pids returns the pid of every instance that runs on the hosts, by id.
func pids(hosts ...*host) map[string]int {
	out := map[string]int{}
	for _, h := range hosts {
		for _, in := range h.rt.List() {
			out[in.ID] = in.PID
		}
	}
	return out
}

// starts counts the start calls that reached the hosts' agents.
func starts(hosts ...*host) int64 {
	var n int64
	for _, h := range hosts {
		n += h.starts.Load()
	}
	return n
}

// waitEvent waits until one of c's events (stored in the background)
// satisfies match; what describes it.
func waitEvent(t *testing.T, c *controller.Controller, what string, match func(api.Event) bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		evs, err := c.Events(0, 10000)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(evs, match) {
			return nil
		}
		return fmt.Errorf("no event %s among %d", what, len(evs))
	})
}

// TestRestartedServerAdoptsRunningInstances ends a controller that leaves
// its instances running (LeaveRunning), then restarts the server (a new
// Fleet and a new Controller over the same store): the three instances on
// two hosts are adopted with their ids and pids, all in service, without
// a single start call reaching an agent, and each still answers.
func TestRestartedServerAdoptsRunningInstances(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	h1 := s.join(t, "h1", "a", 0, 0)
	h2 := s.join(t, "h2", "b", 0, 0)
	waitState(t, s.fleet, api.HostReady, "h1", "h2")
	a := s.newApp(t, 3, "10s", 2)

	c1, stop1 := s.runController(t, a, s.fleet, true)
	before := waitInService(t, c1, 3)
	if err := stop1(); err != nil {
		t.Fatalf("first controller: %v", err)
	}
	running := pids(h1, h2)
	if len(running) != 3 {
		t.Fatalf("after the controller ended the hosts run %v, want its 3 instances", running)
	}
	for _, in := range before.Instances {
		if running[in.ID] != in.PID {
			t.Fatalf("instance %s runs as pid %d, was %d", in.ID, running[in.ID], in.PID)
		}
	}
	waitEvent(t, c1, "saying the instances were left running", func(ev api.Event) bool {
		return strings.Contains(ev.Reason, "3 instances left running")
	})

	s.stop()
	startsBefore := starts(h1, h2)
	second := s.newFleet(t)
	s.run(t, second)
	c2, _ := s.runController(t, a, second, false)
	select {
	case <-c2.Ready():
	case <-ctx.Done():
		t.Fatal("the restarted controller never became ready")
	}
	after := waitInService(t, c2, 3)
	if n := starts(h1, h2) - startsBefore; n != 0 {
		t.Errorf("%d start calls reached the agents after the restart, want none", n)
	}
	for _, in := range before.Instances {
		i := slices.IndexFunc(after.Instances, func(x api.InstanceStatus) bool { return x.ID == in.ID })
		if i < 0 {
			t.Fatalf("instance %s not adopted: %+v", in.ID, after.Instances)
		}
		got := after.Instances[i]
		if got.PID != in.PID || got.Addr != in.Addr {
			t.Errorf("instance %s adopted as pid %d at %s, was pid %d at %s", in.ID, got.PID, got.Addr, in.PID, in.Addr)
		}
		if got.Host != in.Host || got.Zone != in.Zone || got.Host == "" {
			t.Errorf("instance %s adopted on host %q zone %q, was on %q zone %q", in.ID, got.Host, got.Zone, in.Host, in.Zone)
		}
		body, err := get(ctx, http.DefaultClient, "http://"+in.Addr+"/")
		if err != nil || !strings.Contains(body, `"id":"`+in.ID+`"`) {
			t.Errorf("instance %s at %s answers %q, %v", in.ID, in.Addr, body, err)
		}
		waitEvent(t, c2, "adopting "+in.ID, func(ev api.Event) bool {
			return ev.Instance == in.ID && strings.HasPrefix(ev.Reason, fmt.Sprintf("adopted instance %s (v1) on host h", in.ID)) &&
				strings.Contains(ev.Reason, fmt.Sprintf(", pid %d,", in.PID))
		})
	}
	if after.Crash != nil {
		t.Errorf("adoption counted as a crash: %+v", after.Crash)
	}
}

// TestRestartedServerStopsSurplusAndOtherReleases restarts the server
// with more instances running than the group wants: one of a release the
// group does not run and one surplus of its own release. Both are
// stopped on their hosts, with the reason in an event, the three others
// are adopted, and nothing is started.
func TestRestartedServerStopsSurplusAndOtherReleases(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	h1 := s.join(t, "h1", "a", 0, 0)
	h2 := s.join(t, "h2", "b", 0, 0)
	waitState(t, s.fleet, api.HostReady, "h1", "h2")
	a := s.newApp(t, 3, "10s", 2)

	c1, stop1 := s.runController(t, a, s.fleet, true)
	before := waitInService(t, c1, 3)
	rel := c1.Release()
	if err := stop1(); err != nil {
		t.Fatalf("first controller: %v", err)
	}
	// Started through the fleet, as a launch of the server's would be.
	old := s.spec(t, "web", "web-v7-0000001", 0, 0)
	old.Release = 7
	surplus := s.spec(t, "web", "web-v1-zzzzzz1", 0, 0) // sorts after every id of the controller's
	surplus.Digest = rel.Digest
	for _, sp := range []controller.LaunchSpec{old, surplus} {
		if _, err := s.fleet.Host("web").Start(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(pids(h1, h2)); n != 5 {
		t.Fatalf("%d instances run, want 5", n)
	}

	s.stop()
	startsBefore := starts(h1, h2)
	second := s.newFleet(t)
	s.run(t, second)
	c2, _ := s.runController(t, a, second, false)
	after := waitInService(t, c2, 3)
	testenv.Eventually(t, 30*time.Second, func() error {
		running := pids(h1, h2)
		for _, id := range []string{old.ID, surplus.ID} {
			if _, ok := running[id]; ok {
				return fmt.Errorf("%s still runs", id)
			}
		}
		return nil
	})
	for _, in := range before.Instances {
		if !slices.ContainsFunc(after.Instances, func(x api.InstanceStatus) bool { return x.ID == in.ID && x.PID == in.PID }) {
			t.Errorf("instance %s (pid %d) not adopted: %+v", in.ID, in.PID, after.Instances)
		}
	}
	if n := starts(h1, h2) - startsBefore; n != 0 {
		t.Errorf("%d start calls reached the agents after the restart, want none", n)
	}
	for id, why := range map[string]string{old.ID: "v7 is not the group's release (v1)", surplus.ID: "surplus: 3 of v1 wanted"} {
		waitEvent(t, c2, "draining "+id+" saying "+why, func(ev api.Event) bool {
			return ev.Instance == id && ev.State == api.Draining.String() && ev.Reason == "adopted, then stopped: "+why
		})
	}
}

// TestRestartedServerReplacesMissingAndUnhealthy restarts the server when
// two of the group's three instances are gone and an instance of its
// release that never answers its health check runs: the one left is
// adopted, one instance is launched at once for the missing, and the
// unhealthy adopted one is replaced once its grace ends. Ids continue
// past the adopted ones, and no crash is recorded.
func TestRestartedServerReplacesMissingAndUnhealthy(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	h1 := s.join(t, "h1", "a", 0, 0)
	h2 := s.join(t, "h2", "b", 0, 0)
	waitState(t, s.fleet, api.HostReady, "h1", "h2")
	a := s.newApp(t, 3, "2s", 2)

	c1, stop1 := s.runController(t, a, s.fleet, true)
	before := waitInService(t, c1, 3)
	rel := c1.Release()
	if err := stop1(); err != nil {
		t.Fatalf("first controller: %v", err)
	}
	mute := s.spec(t, "web", "web-v1-00000099", 0, 0) // sorts before every id of the controller's
	mute.Digest, mute.Command, mute.Env = rel.Digest, "exec sleep 600", nil
	if _, err := s.fleet.Host("web").Start(ctx, mute); err != nil {
		t.Fatal(err)
	}
	s.stop()
	// Two instances end while no server runs.
	kept := before.Instances[0]
	for _, in := range before.Instances[1:] {
		for _, h := range []*host{h1, h2} {
			if _, ok := pids(h)[in.ID]; ok {
				if err := h.rt.Stop(ctx, in.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	startsBefore := starts(h1, h2)
	second := s.newFleet(t)
	s.run(t, second)
	c2, _ := s.runController(t, a, second, false)
	after := waitInService(t, c2, 3)
	if !slices.ContainsFunc(after.Instances, func(x api.InstanceStatus) bool { return x.ID == kept.ID && x.PID == kept.PID }) {
		t.Errorf("instance %s (pid %d) not adopted: %+v", kept.ID, kept.PID, after.Instances)
	}
	if n := starts(h1, h2) - startsBefore; n != 2 {
		t.Errorf("%d start calls reached the agents after the restart, want 2 (the missing one, the unhealthy one's replacement)", n)
	}
	for _, in := range after.Instances {
		if in.ID != kept.ID && !strings.HasSuffix(in.ID, "100") && !strings.HasSuffix(in.ID, "101") {
			t.Errorf("new instance %s: its number does not follow the adopted web-v1-00000099", in.ID)
		}
	}
	if _, ok := pids(h1, h2)[mute.ID]; ok {
		t.Errorf("the unhealthy adopted instance %s still runs", mute.ID)
	}
	waitEvent(t, c2, "failing "+mute.ID, func(ev api.Event) bool {
		return ev.Instance == mute.ID && ev.State == api.Failed.String() && strings.HasPrefix(ev.Reason, "never became healthy: grace 2s ended")
	})
	if st := c2.Status(); st.Crash != nil || st.Backoff != "" {
		t.Errorf("adoption counted as a crash: crash %+v, backoff %q", st.Crash, st.Backoff)
	}
}
