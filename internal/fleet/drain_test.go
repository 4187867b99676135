package fleet_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// startApp runs a controller of app web (newApp) with the fleet as its
// Host, desired instances and group.max_replacing maxReplacing, until the
// test ends.
func (s *server) startApp(t *testing.T, desired, maxReplacing int) *controller.Controller {
	t.Helper()
	c, _ := s.runController(t, s.newApp(t, desired, "10s", maxReplacing), s.fleet, false)
	return c
}

// waitStatus waits until fn accepts c's status.
func waitStatus(t *testing.T, c *controller.Controller, what string, fn func(api.Status) error) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		if err := fn(c.Status()); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// inService accepts a status with n instances, all in service.
func inService(n int) func(api.Status) error {
	return func(st api.Status) error {
		if st.InService != n || len(st.Instances) != n {
			return fmt.Errorf("%d in service of %d instances, want %d", st.InService, len(st.Instances), n)
		}
		return nil
	}
}

// spreadEvenly waits for n instances in service, n/2 on each host.
func spreadEvenly(t *testing.T, c *controller.Controller, n int, h1, h2 *host) {
	t.Helper()
	waitStatus(t, c, fmt.Sprintf("%d in service, spread", n), func(st api.Status) error {
		if err := inService(n)(st); err != nil {
			return err
		}
		if a, b := len(h1.running()), len(h2.running()); a != n/2 || b != n/2 {
			return fmt.Errorf("h1 runs %d instances and h2 %d", a, b)
		}
		return nil
	})
}

// allEvents returns every event of c, oldest first.
func allEvents(t *testing.T, c *controller.Controller) []api.Event {
	t.Helper()
	evs, err := c.Events(0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// checkMoved checks the events of a move of the instances old: a
// "stopped" event says each was moved off host; each replaced by an
// instance named in a "moving" event (every one, with eachReplaced) was
// drained and stopped only after that replacement was in service; and,
// replaying every state event, the group never had fewer than n in
// service once it first had n. (An instance is also retired without a
// replacement of its own once the others alone are n in service.)
func checkMoved(t *testing.T, c *controller.Controller, old []string, host string, n int, eachReplaced bool) {
	t.Helper()
	var evs []api.Event
	testenv.Eventually(t, 30*time.Second, func() error {
		evs = allEvents(t, c)
		for _, id := range old {
			if !slices.ContainsFunc(evs, func(ev api.Event) bool {
				return ev.Type == "move" && strings.HasPrefix(ev.Reason, "stopped "+id+": moved off host "+host)
			}) {
				return fmt.Errorf("no stopped event of %s", id)
			}
		}
		return nil
	})
	at := func(id, state string) int {
		return slices.IndexFunc(evs, func(ev api.Event) bool {
			return ev.Type == "state" && ev.Instance == id && ev.State == state
		})
	}
	for _, id := range old {
		prefix := "moving " + id + " off host " + host + " (draining): replacement "
		i := slices.IndexFunc(evs, func(ev api.Event) bool { return ev.Type == "move" && strings.HasPrefix(ev.Reason, prefix) })
		if i < 0 {
			if eachReplaced {
				t.Errorf("no %q event", prefix)
			}
			continue
		}
		repl := strings.TrimPrefix(evs[i].Reason, prefix)
		served, drained, stopped := at(repl, "in_service"), at(id, "draining"), at(id, "stopped")
		if served < 0 || drained < served || stopped < drained {
			t.Errorf("%s: replacement %s in service at event %d, %s draining at %d, stopped at %d",
				id, repl, served, id, drained, stopped)
		}
	}
	state := map[string]string{}
	count, reached := 0, false
	for _, ev := range evs {
		if ev.Type != "state" {
			continue
		}
		if state[ev.Instance] == "in_service" {
			count--
		}
		state[ev.Instance] = ev.State
		if ev.State == "in_service" {
			count++
		}
		if count >= n {
			reached = true
		}
		if reached && count < n {
			t.Errorf("%d in service after event %d (%s %s: %s)", count, ev.Seq, ev.Instance, ev.State, ev.Reason)
		}
	}
}

// TestDrainMovesInstancesLaunchFirst drains one of two hosts under a group
// of four spread 2/2: the two instances there are replaced on the other
// host one at a time (max_replacing 1), each stopped only after its
// replacement serves, with never fewer than four in service; the moved
// instances say so in status while they move.
func TestDrainMovesInstancesLaunchFirst(t *testing.T) {
	s := newServer(t)
	h1 := s.join(t, "h1", "a", 0, 0)
	h2 := s.join(t, "h2", "b", 0, 0)
	waitState(t, s.fleet, api.HostReady, "h1", "h2")
	c := s.startApp(t, 4, 1)
	spreadEvenly(t, c, 4, h1, h2)
	old := h1.running()

	if err := s.fleet.Drain("h1"); err != nil {
		t.Fatal(err)
	}
	sawMoving := false
	ctx := testenv.Context(t, 60*time.Second)
	for {
		st := c.Status()
		if st.InService < 4 {
			t.Fatalf("%d in service during the move: %+v", st.InService, st.Instances)
		}
		for _, in := range st.Instances {
			if in.Moving != "" {
				sawMoving = true
				if !slices.Contains(old, in.ID) || in.Moving != "off host h1 (draining)" {
					t.Fatalf("instance %s moving %q; the instances of h1 are %v", in.ID, in.Moving, old)
				}
			}
		}
		if len(h1.running()) == 0 && inService(4)(st) == nil && len(h2.running()) == 4 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the move did not end: h1 runs %v, h2 %v; status %+v", h1.running(), h2.running(), st.Instances)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !sawMoving {
		t.Error("no instance showed its move in status")
	}
	checkMoved(t, c, old, "h1", 4, true)
	if st := status(s.fleet, "h1"); st.State != api.HostDraining || st.Instances != 0 {
		t.Errorf("h1 after the move: %+v", st)
	}

	// Undrained, the host takes new instances again; nothing moves back.
	if err := s.fleet.Undrain("h1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Scale(ctx, 5); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, "five in service", inService(5))
	if a, b := len(h1.running()), len(h2.running()); a != 1 || b != 4 {
		t.Fatalf("h1 runs %d and h2 %d after the undrain and a scale-out, want 1 and 4", a, b)
	}
}

// TestDrainWithoutCapacityKeepsServing drains both hosts: nothing can
// place a replacement, so the four instances keep serving and the
// replacement waits as pending with the reason; once one host is
// undrained, the other's instances move there. A move that began on h2
// between the two drains (an instance of h1 replaced there) is one of
// those, still launch first.
func TestDrainWithoutCapacityKeepsServing(t *testing.T) {
	s := newServer(t)
	h1 := s.join(t, "h1", "a", 0, 0)
	h2 := s.join(t, "h2", "b", 0, 0)
	waitState(t, s.fleet, api.HostReady, "h1", "h2")
	c := s.startApp(t, 4, 1)
	spreadEvenly(t, c, 4, h1, h2)
	onH1 := h1.running()

	for _, n := range []string{"h1", "h2"} {
		if err := s.fleet.Drain(n); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(t, c, "a pending replacement", func(st api.Status) error {
		moving, pending := 0, 0
		for _, in := range st.Instances {
			switch {
			case in.State == api.InService && in.Moving != "":
				moving++
			case in.State == api.Pending:
				pending++
				if !strings.HasPrefix(in.Reason, "no capacity: an instance of web (0.5 CPU, 64 MiB): h1: draining; h2: draining") || in.Replaces == "" {
					return fmt.Errorf("pending %s replacing %q with reason %q", in.ID, in.Replaces, in.Reason)
				}
			}
		}
		if st.InService != 4 || moving != 4 || pending != 1 || len(st.Instances) != 5 {
			return fmt.Errorf("%d in service, %d of them moving, %d pending: %+v", st.InService, moving, pending, st.Instances)
		}
		return nil
	})
	// (Between the two drains an instance of h1 may have moved to h2.)
	if a, b := len(h1.running()), len(h2.running()); a+b != 4 {
		t.Fatalf("h1 runs %d and h2 %d while nothing can move, want 4 in all", a, b)
	}

	if err := s.fleet.Undrain("h2"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, "everything on h2", func(st api.Status) error {
		if err := inService(4)(st); err != nil {
			return err
		}
		if a, b := len(h1.running()), len(h2.running()); a != 0 || b != 4 {
			return fmt.Errorf("h1 runs %d instances and h2 %d", a, b)
		}
		for _, in := range st.Instances {
			if in.Moving != "" {
				return fmt.Errorf("%s still moving %q", in.ID, in.Moving)
			}
		}
		return nil
	})
	checkMoved(t, c, onH1, "h1", 4, false)
}

// nextEvacuation waits for the next evacuation on ch.
func nextEvacuation(t *testing.T, ctx context.Context, ch <-chan controller.Evacuation) controller.Evacuation {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-ctx.Done():
		t.Fatal("no evacuation came")
		return controller.Evacuation{}
	}
}

// TestDrainingHostEvacuatedAfterARestart checks what the fleet tells the
// apps' controllers of a draining host: its instances at Drain, nothing
// at Undrain; and after a restart of the server, once the stored draining
// host is listed, its instances again, both to an app whose Host was
// asked for before the listing and to one asked for after.
func TestDrainingHostEvacuatedAfterARestart(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s := newServer(t)
	h1 := s.join(t, "h1", "a", 0, 0)
	waitState(t, s.fleet, api.HostReady, "h1")
	for _, l := range []struct{ app, id string }{{"web", "web-1"}, {"web", "web-0"}, {"api", "api-0"}} {
		if _, err := s.fleet.Host(l.app).Start(ctx, s.spec(t, l.app, l.id, 0, 0)); err != nil {
			t.Fatal(err)
		}
	}
	web := s.fleet.Host("web").(controller.Evacuator)
	if err := s.fleet.Drain("h1"); err != nil {
		t.Fatal(err)
	}
	want := controller.Evacuation{Host: "h1", IDs: []string{"web-0", "web-1"}, Reason: "draining"}
	if e := nextEvacuation(t, ctx, web.Evacuations()); !equalEvacuation(e, want) {
		t.Fatalf("evacuation %+v, want %+v", e, want)
	}
	if e := nextEvacuation(t, ctx, s.fleet.Host("api").(controller.Evacuator).Evacuations()); e.Host != "h1" || !slices.Equal(e.IDs, []string{"api-0"}) {
		t.Fatalf("api's evacuation %+v", e)
	}
	if err := s.fleet.Undrain("h1"); err != nil {
		t.Fatal(err)
	}
	if e := nextEvacuation(t, ctx, web.Evacuations()); e.Host != "h1" || len(e.IDs) != 0 {
		t.Fatalf("evacuation at the undrain %+v, want none named", e)
	}
	if err := s.fleet.Drain("h1"); err != nil {
		t.Fatal(err)
	}
	nextEvacuation(t, ctx, web.Evacuations())

	// A restart: the instances run on; the new fleet knows h1 drains from
	// its store only.
	s.stop()
	second := s.newFleet(t)
	webAfter := second.Host("web").(controller.Evacuator)
	s.run(t, second)
	if err := second.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	if e := nextEvacuation(t, ctx, webAfter.Evacuations()); !equalEvacuation(e, want) {
		t.Fatalf("evacuation after the restart %+v, want %+v", e, want)
	}
	apiAfter := second.Host("api").(controller.Evacuator)
	if e := nextEvacuation(t, ctx, apiAfter.Evacuations()); e.Host != "h1" || !slices.Equal(e.IDs, []string{"api-0"}) {
		t.Fatalf("api's evacuation after the restart %+v", e)
	}
	if st := status(second, "h1"); st.State != api.HostDraining || st.Instances != 3 {
		t.Fatalf("h1 after the restart: %+v", st)
	}
	if got := h1.running(); len(got) != 3 {
		t.Fatalf("h1 runs %v after the restart", got)
	}
}

func equalEvacuation(a, b controller.Evacuation) bool {
	return a.Host == b.Host && a.Reason == b.Reason && slices.Equal(a.IDs, b.IDs)
}
