package rollout

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// roundTrip stores r as the controller would and restores it.
func roundTrip(t *testing.T, r *Rollout) *Rollout {
	t.Helper()
	b, err := json.Marshal(r.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	back, err := Restore(s)
	if err != nil {
		t.Fatalf("restore %s: %v", b, err)
	}
	return back
}

func TestSnapshotResumes(t *testing.T) {
	spec := Spec{Group: "web", From: 1, To: 2, Desired: 2, Policy: Policy{MaxSurge: Percent(50), BatchTimeout: time.Minute}}
	a := mustNew(t, spec)
	a.Step(t0, []Instance{in("a", 1, api.InService), in("b", 1, api.InService)})
	obs := []Instance{in("a", 1, api.InService), in("b", 1, api.InService), in("n1", 2, api.InService)}
	a.Step(at(time.Second), obs)
	n2 := in("n2", 2, api.Starting)
	obs = []Instance{in("a", 1, api.Draining), in("b", 1, api.InService), in("n1", 2, api.InService), n2}
	a.Step(at(2*time.Second), obs)

	b := roundTrip(t, a)
	if !reflect.DeepEqual(roundTrip(t, b).Snapshot(), b.Snapshot()) {
		t.Errorf("snapshot changes on a second round trip")
	}
	// Both go on identically from the same observations, deadline
	// included: n2 was first seen at 2s.
	for _, step := range []struct {
		at  time.Duration
		obs []Instance
	}{
		{3 * time.Second, []Instance{in("b", 1, api.InService), in("n1", 2, api.InService), n2}},
		{62 * time.Second, []Instance{in("b", 1, api.InService), in("n1", 2, api.InService), n2}},
	} {
		sa, sb := a.Step(at(step.at), step.obs), b.Step(at(step.at), step.obs)
		sa.Events, sb.Events = nil, nil
		if !reflect.DeepEqual(sa, sb) {
			t.Fatalf("at %s: original %+v, restored %+v", step.at, sa, sb)
		}
	}
	if p := b.Phase(); p != PhaseRollingBack {
		t.Errorf("restored rollout in %s, want rolling_back after n2's deadline", p)
	}
}

func TestRestoreForgivesInstancesLostInARestart(t *testing.T) {
	a := mustNew(t, Spec{From: 1, To: 2, Desired: 1, Policy: Policy{MaxFailures: 1}})
	a.Step(t0, []Instance{in("a", 1, api.InService)})
	a.Step(at(time.Second), []Instance{in("a", 1, api.InService), in("n", 2, api.Starting)})
	b := roundTrip(t, a)
	// The controller restarted and n is gone with it: not a crash of v2.
	st := b.Step(at(5*time.Second), []Instance{in("a", 1, api.InService)})
	want(t, st, 1, nil, PhaseSurging)
	// From now on a vanished instance counts again.
	b.Step(at(6*time.Second), []Instance{in("a", 1, api.InService), in("n2", 2, api.Starting)})
	st = b.Step(at(7*time.Second), []Instance{in("a", 1, api.InService)})
	want(t, st, 0, nil, PhaseRolledBack)
}

func TestRestoreRejects(t *testing.T) {
	good := mustNew(t, Spec{From: 1, To: 2, Desired: 1}).Snapshot()
	cases := map[string]func(s *Snapshot){
		"version":         func(s *Snapshot) { s.Version = 2 },
		"spec":            func(s *Snapshot) { s.Spec.To = 1 },
		"phase":           func(s *Snapshot) { s.Phase = 99 },
		"back phase":      func(s *Snapshot) { s.Phase = PhaseRolledBack },
		"forward phase":   func(s *Snapshot) { s.Back = true },
		"aborted":         func(s *Snapshot) { s.Aborted = true },
		"ended":           func(s *Snapshot) { s.Phase = PhaseDone },
		"crashes":         func(s *Snapshot) { s.Failures = 1 },
		"done":            func(s *Snapshot) { s.Done = 2 },
		"tracked repeat":  func(s *Snapshot) { s.Tracked = []TrackedSnapshot{{ID: "x"}, {ID: "x"}} },
		"tracked restart": func(s *Snapshot) { s.Tracked = []TrackedSnapshot{{ID: "x", Restarts: -1}} },
		"drain empty":     func(s *Snapshot) { s.Drains = []DrainSnapshot{{}} },
	}
	for name, mutate := range cases {
		s := good
		mutate(&s)
		if _, err := Restore(s); err == nil || !strings.HasPrefix(err.Error(), "restore rollout: ") {
			t.Errorf("%s: Restore = %v, want an error", name, err)
		}
	}
	if _, err := Restore(good); err != nil {
		t.Errorf("good snapshot: %v", err)
	}
}

func FuzzRestore(f *testing.F) {
	r, _ := New(t0, Spec{Group: "web", From: 1, To: 2, Desired: 3, Policy: Policy{MaxSurge: Percent(50)}})
	r.Step(t0, []Instance{in("a", 1, api.InService), in("b", 1, api.Unhealthy), in("c", 1, api.InService)})
	r.Step(at(time.Second), []Instance{in("a", 1, api.InService), in("c", 1, api.InService), in("n", 2, api.Starting)})
	seed, _ := json.Marshal(r.Snapshot())
	f.Add(seed)
	r.Abort(at(2*time.Second), "test")
	seed, _ = json.Marshal(r.Snapshot())
	f.Add(seed)
	f.Add([]byte(`{"version":1,"spec":{"to":1,"desired":0,"policy":{}},"phase":"surging"}`))
	f.Add([]byte(`{"version":1,"spec":{"to":1,"from":0,"desired":1,"policy":{"max_surge":"0","max_unavailable":"1"}},"phase":"done","ended":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Snapshot
		if json.Unmarshal(data, &s) != nil {
			return
		}
		r, err := Restore(s)
		if err != nil {
			return
		}
		again, err := Restore(r.Snapshot())
		if err != nil {
			t.Fatalf("restored snapshot does not restore again: %v", err)
		}
		if !reflect.DeepEqual(again.Snapshot(), r.Snapshot()) {
			t.Fatalf("snapshot changed on round trip")
		}
		// A restored rollout steps without panicking and within its limits.
		obs := []Instance{in("x", s.Spec.From, api.InService), in("y", s.Spec.To, api.Starting)}
		for i := range 3 {
			st := r.Step(s.Started.Add(time.Duration(i)*time.Hour), obs)
			surge, _ := r.Limits()
			if st.Launch < 0 || st.Launch > r.spec.Desired+surge {
				t.Fatalf("step launches %d", st.Launch)
			}
		}
		r.Progress(s.Started)
	})
}

// TestRestoreDrainsAgainWhatWasNotCarriedOut: a drain stored in the
// snapshot whose instance the resumed controller adopted still in service
// (its leader died between storing the step and draining it) is listed
// once more; one that the observation shows draining is not; the
// instance is not listed a third time while the controller catches up.
func TestRestoreDrainsAgainWhatWasNotCarriedOut(t *testing.T) {
	a := mustNew(t, Spec{From: 1, To: 2, Desired: 2, Policy: Policy{MaxSurge: Count(2)}})
	want(t, a.Step(t0, []Instance{in("a", 1, api.InService), in("b", 1, api.InService)}), 2, nil, PhaseSurging)
	obs := []Instance{in("a", 1, api.InService), in("b", 1, api.InService), in("n1", 2, api.InService), in("n2", 2, api.InService)}
	want(t, a.Step(at(time.Second), obs), 0, []string{"a", "b"}, PhaseDraining)

	// The snapshot of that step was stored; a was drained, b was not.
	b := roundTrip(t, a)
	obs = []Instance{in("a", 1, api.Draining), in("b", 1, api.InService), in("n1", 2, api.InService), in("n2", 2, api.InService)}
	st := b.Step(at(2*time.Second), obs)
	want(t, st, 0, []string{"b"}, PhaseDraining)
	if len(st.Events) != 1 || !strings.Contains(st.Events[0], "drain instance b (v1, in_service) again") {
		t.Errorf("events %q, want one for b drained again", st.Events)
	}
	want(t, b.Step(at(3*time.Second), obs), 0, nil, PhaseDraining)
	st = b.Step(at(4*time.Second), []Instance{in("n1", 2, api.InService), in("n2", 2, api.InService)})
	want(t, st, 0, nil, PhaseDone)
}
