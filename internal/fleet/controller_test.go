package fleet_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestControllerOverTheFleet runs an app's controller with the fleet as its
// Host: its instances spread over two zones; a lost host's instance fails
// with the host's reason and is replaced on the other host; the host's
// stale instance is stopped when it comes back; and with every host
// draining a new instance waits as pending for lack of capacity, with the
// reason, until a host takes it (and the instances of the host still
// draining move there too).
func TestControllerOverTheFleet(t *testing.T) {
	s := newServer(t)
	h1 := s.join(t, "h1", "a", 0, 0)
	h2 := s.join(t, "h2", "b", 0, 0)
	waitState(t, s.fleet, api.HostReady, "h1", "h2")

	c := s.startApp(t, 2, 2)
	ctx := testenv.Context(t, 2*time.Minute)
	waitStatus(t, c, "two in service", inService(2))
	if a, b := len(h1.running()), len(h2.running()); a != 1 || b != 1 {
		t.Fatalf("h1 runs %d instances and h2 %d, want one in each zone", a, b)
	}
	onH2 := h2.running()[0]
	// Each instance's host and zone are the fleet host's that runs it,
	// and each host counts the instance's declared run.cpu and run.memory.
	zones := map[string]string{"h1": "a", "h2": "b"}
	ran := map[string]string{h1.running()[0]: "h1", onH2: "h2"}
	for _, is := range c.Status().Instances {
		if is.Host != ran[is.ID] || is.Zone != zones[is.Host] {
			t.Errorf("instance %s: host %q zone %q, want %q in zone %q", is.ID, is.Host, is.Zone, ran[is.ID], zones[ran[is.ID]])
		}
	}
	for _, hs := range s.fleet.Status() {
		if hs.UsedCPU != 0.5 || hs.UsedMemoryBytes != 64<<20 {
			t.Errorf("host %s: used cpu %v memory %d, want the instance's 0.5 and 64MiB", hs.Name, hs.UsedCPU, hs.UsedMemoryBytes)
		}
	}

	// h2 is lost: its instance fails with the host's reason and is
	// replaced on h1.
	h2.unplug()
	waitStatus(t, c, "the lost instance replaced on h1", func(st api.Status) error {
		if err := inService(2)(st); err != nil {
			return err
		}
		if n := len(h1.running()); n != 2 {
			return fmt.Errorf("h1 runs %d instances", n)
		}
		return nil
	})
	evs, err := c.Events(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs {
		if ev.Instance == onH2 && ev.State == api.Failed.String() {
			found = true
			if !strings.HasPrefix(ev.Reason, "host h2 unreachable for ") {
				t.Errorf("%s failed with %q, want the host's loss", onH2, ev.Reason)
			}
		}
	}
	if !found {
		t.Fatalf("no failed event of %s in %+v", onH2, evs)
	}
	if st := c.Status(); st.Crash != nil {
		t.Errorf("a lost host counted as a crash: %+v", st.Crash)
	}

	// h2 comes back: its stale instance is stopped; the group stays at 2.
	h2.plug()
	waitState(t, s.fleet, api.HostReady, "h2")
	if got := h2.running(); len(got) != 0 {
		t.Fatalf("h2 still runs %v", got)
	}

	// No host takes instances: a scale-up waits as pending, with the
	// reason, until one does.
	for _, n := range []string{"h1", "h2"} {
		if err := s.fleet.Drain(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Scale(ctx, 3); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, "a pending instance for lack of capacity", func(st api.Status) error {
		for _, in := range st.Instances {
			if in.State == api.Pending {
				if !strings.HasPrefix(in.Reason, "no capacity: an instance of web (0.5 CPU, 64 MiB): h1: draining; h2: draining") {
					return fmt.Errorf("pending with reason %q", in.Reason)
				}
				return nil
			}
		}
		return fmt.Errorf("no pending instance in %+v", st.Instances)
	})
	if err := s.fleet.Undrain("h2"); err != nil {
		t.Fatal(err)
	}
	// h1 still drains: its two instances move to h2 too.
	waitStatus(t, c, "three in service on h2", func(st api.Status) error {
		if err := inService(3)(st); err != nil {
			return err
		}
		if a, b := len(h1.running()), len(h2.running()); a != 0 || b != 3 {
			return fmt.Errorf("h1 runs %d instances and h2 %d", a, b)
		}
		return nil
	})
}
