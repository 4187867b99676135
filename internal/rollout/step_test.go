package rollout

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func in(id string, release int, st api.State) Instance {
	return Instance{ID: id, Release: release, State: st, Since: t0}
}

func mustNew(t *testing.T, spec Spec) *Rollout {
	t.Helper()
	r, err := New(t0, spec)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// want checks a step's actions and phase.
func want(t *testing.T, st Step, launch int, drain []string, phase Phase) {
	t.Helper()
	if st.Launch != launch || !slices.Equal(st.Drain, drain) || st.Phase != phase {
		t.Fatalf("step = launch %d of v%d, drain %v, %s (%s); want launch %d, drain %v, %s",
			st.Launch, st.Release, st.Drain, st.Phase, st.Reason, launch, drain, phase)
	}
}

func TestNewRejects(t *testing.T) {
	cases := []struct {
		spec Spec
		want string
	}{
		{Spec{From: 2, To: 2, Desired: 1}, "already on release v2"},
		{Spec{From: 1, To: 0, Desired: 1}, "must be positive"},
		{Spec{From: -1, To: 2, Desired: 1}, "must not be negative"},
		{Spec{From: 1, To: 2, Desired: -1}, "desired count"},
		{Spec{From: 1, To: 2, Desired: 1, Policy: Policy{MaxSurge: Count(0)}}, "both zero"},
	}
	for _, tc := range cases {
		if _, err := New(t0, tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
}

func TestFirstStepLaunchesTheSurge(t *testing.T) {
	for _, tc := range []struct{ desired, launch int }{{1, 1}, {4, 1}, {5, 2}, {10, 3}} {
		r := mustNew(t, Spec{From: 1, To: 2, Desired: tc.desired})
		var obs []Instance
		for i := range tc.desired {
			obs = append(obs, in(string(rune('a'+i)), 1, api.InService))
		}
		st := r.Step(t0, obs)
		want(t, st, tc.launch, nil, PhaseSurging)
		if st.Release != 2 || st.Total != tc.desired || st.Done != 0 || len(st.Events) != 2 {
			t.Errorf("desired %d: step %+v", tc.desired, st)
		}
	}
}

func TestOldInstancesThatDoNotServeGoFirst(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 3})
	// One old instance is unhealthy and one is still starting: both are
	// drained at once, and the two slots they leave are not used until
	// they stop (draining instances count towards the surge).
	st := r.Step(t0, []Instance{in("a", 1, api.InService), in("b", 1, api.Unhealthy), in("c", 1, api.Starting)})
	want(t, st, 1, []string{"b", "c"}, PhaseSurging)
	st = r.Step(at(time.Second), []Instance{in("a", 1, api.InService), in("b", 1, api.Draining), in("c", 1, api.Draining), in("n1", 2, api.Starting)})
	want(t, st, 0, nil, PhaseWaitingHealthy)
	st = r.Step(at(2*time.Second), []Instance{in("a", 1, api.InService), in("n1", 2, api.Starting)})
	want(t, st, 2, nil, PhaseSurging)
}

func TestNeverBelowCapacity(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 3})
	// An old instance crashed on its own: only 2 of 3 serve. A new one in
	// service brings it back to 3; nothing may be drained yet.
	st := r.Step(t0, []Instance{in("a", 1, api.InService), in("b", 1, api.InService), in("n1", 2, api.InService)})
	want(t, st, 1, nil, PhaseSurging)
	st = r.Step(at(time.Second), []Instance{in("a", 1, api.InService), in("b", 1, api.InService), in("n1", 2, api.InService), in("n2", 2, api.InService)})
	want(t, st, 0, []string{"a"}, PhaseDraining)
	if st.Done != 2 {
		t.Errorf("done %d, want 2", st.Done)
	}
}

func TestDrainNotYetObserved(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 1})
	want(t, r.Step(t0, []Instance{in("a", 1, api.InService)}), 1, nil, PhaseSurging)
	st := r.Step(at(time.Second), []Instance{in("a", 1, api.InService), in("n", 2, api.InService)})
	want(t, st, 0, []string{"a"}, PhaseDraining)
	// The controller has not yet reported "a" draining: it counts as
	// draining all the same, and is not drained twice.
	st = r.Step(at(2*time.Second), []Instance{in("a", 1, api.InService), in("n", 2, api.InService)})
	want(t, st, 0, nil, PhaseDraining)
	st = r.Step(at(3*time.Second), []Instance{in("n", 2, api.InService)})
	want(t, st, 0, nil, PhaseDone)
	if st.Done != 1 || !strings.Contains(st.Reason, "1 of 1 instances of v2 in service") {
		t.Errorf("done step %+v", st)
	}
	// A drained instance that vanished is not a crash, and a finished
	// rollout acts no more.
	st = r.Step(at(4*time.Second), nil)
	want(t, st, 0, nil, PhaseDone)
	if len(st.Events) != 0 || st.Failed != nil {
		t.Errorf("terminal step %+v", st)
	}
	if err := r.Abort(at(5*time.Second), "late"); !errors.Is(err, ErrFinished) {
		t.Errorf("abort after done: %v", err)
	}
}

func TestDoneWaitsForDrains(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 1})
	r.Step(t0, []Instance{in("a", 1, api.InService)})
	r.Step(at(time.Second), []Instance{in("a", 1, api.InService), in("n", 2, api.InService)})
	st := r.Step(at(2*time.Second), []Instance{in("a", 1, api.Draining), in("n", 2, api.InService)})
	want(t, st, 0, nil, PhaseDraining)
	if !strings.Contains(st.Reason, "1 draining (up to 30s)") {
		t.Errorf("reason %q", st.Reason)
	}
}

func TestUnhealthyNewInstanceIsReplaced(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 2, Policy: Policy{MaxSurge: Count(2)}})
	want(t, r.Step(t0, []Instance{in("a", 1, api.InService), in("b", 1, api.InService)}), 2, nil, PhaseSurging)
	obs := []Instance{in("a", 1, api.InService), in("b", 1, api.InService), in("n1", 2, api.InService), in("n2", 2, api.Starting)}
	want(t, r.Step(at(time.Second), obs), 0, []string{"a"}, PhaseWaitingHealthy)
	// n1 turns unhealthy: it needs a replacement, but the group is at 4
	// of 4 live, and b may not go (only b serves).
	obs = []Instance{in("a", 1, api.Draining), in("b", 1, api.InService), in("n1", 2, api.Unhealthy), in("n2", 2, api.InService)}
	obs[2].Since = at(2 * time.Second)
	want(t, r.Step(at(2*time.Second), obs), 0, nil, PhaseWaitingHealthy)
	obs = slices.Delete(obs, 0, 1) // a stopped
	st := r.Step(at(3*time.Second), obs)
	want(t, st, 1, nil, PhaseSurging)
	// The replacement serves: b goes, and so does the unhealthy surplus.
	obs = append(obs, in("n3", 2, api.InService))
	want(t, r.Step(at(4*time.Second), obs), 0, []string{"b", "n1"}, PhaseDraining)
	// n1 draining is killed at its drain deadline and reported failed:
	// not a crash.
	obs = []Instance{in("n1", 2, api.Failed), in("n2", 2, api.InService), in("n3", 2, api.InService)}
	st = r.Step(at(5*time.Second), obs)
	want(t, st, 0, nil, PhaseDone)
	if r.failures != 0 {
		t.Errorf("%d crashes counted", r.failures)
	}
}

func TestUnhealthyDeadlineRunsFromSince(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 1, Policy: Policy{BatchTimeout: time.Minute}})
	r.Step(t0, []Instance{in("a", 1, api.InService)})
	r.Step(at(50*time.Second), []Instance{in("a", 1, api.InService), in("n", 2, api.InService)})
	sick := in("n", 2, api.Unhealthy)
	sick.Since, sick.Reason = at(55*time.Second), "status 503"
	// 1m after launch but only 10s unhealthy: keep waiting (a is draining).
	st := r.Step(at(65*time.Second), []Instance{in("a", 1, api.Draining), sick})
	want(t, st, 0, nil, PhaseWaitingHealthy)
	st = r.Step(at(115*time.Second), []Instance{in("a", 1, api.Draining), sick})
	if st.Phase != PhaseRollingBack || st.Failed == nil || st.Failed.Reason != "unhealthy for 1m0s (status 503)" || st.Failed.InstanceID != "n" {
		t.Fatalf("step %+v failed %+v", st, st.Failed)
	}
	// a is gone (drained): v1 is launched again first; n keeps its slot
	// until v1 serves... n does not serve, so it is drained at once.
	want(t, st, 0, []string{"n"}, PhaseRollingBack)
	st = r.Step(at(116*time.Second), []Instance{in("n", 2, api.Draining)})
	want(t, st, 1, nil, PhaseRollingBack)
}

func TestInPlaceRestartsAreCrashes(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 1, Policy: Policy{MaxFailures: 2}})
	r.Step(t0, []Instance{in("a", 1, api.InService)})
	n := in("n", 2, api.Starting)
	r.Step(at(time.Second), []Instance{in("a", 1, api.InService), n})
	n.Restarts = 1
	want(t, r.Step(at(2*time.Second), []Instance{in("a", 1, api.InService), n}), 0, nil, PhaseWaitingHealthy)
	n.Restarts, n.Reason = 2, "exit status 1"
	st := r.Step(at(3*time.Second), []Instance{in("a", 1, api.InService), n})
	if st.Failed == nil || st.Failed.Reason != "crashed 2 times, crash loop (last: restarted 2 times: exit status 1)" {
		t.Fatalf("failure %+v", st.Failed)
	}
	want(t, st, 0, []string{"n"}, PhaseRollingBack)
	st = r.Step(at(4*time.Second), []Instance{in("a", 1, api.InService)})
	want(t, st, 0, nil, PhaseRolledBack)
}

func TestRollbackRelaunchesDrainedCapacityFirst(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 2})
	r.Step(t0, []Instance{in("a", 1, api.InService), in("b", 1, api.InService)})
	r.Step(at(time.Second), []Instance{in("a", 1, api.InService), in("b", 1, api.InService), in("n1", 2, api.InService)})
	r.Step(at(2*time.Second), []Instance{in("b", 1, api.InService), in("n1", 2, api.InService)})
	if err := r.Fail(at(3*time.Second), Failure{Reason: "host refused the launch"}); err != nil {
		t.Fatal(err)
	}
	// n1 serves and keeps serving until v1 is back at 2.
	st := r.Step(at(3*time.Second), []Instance{in("b", 1, api.InService), in("n1", 2, api.InService), in("n2", 2, api.Starting)})
	want(t, st, 0, []string{"n2"}, PhaseRollingBack)
	if st.Failed == nil || st.Failed.Reason != "host refused the launch" || st.Release != 1 {
		t.Errorf("step %+v", st)
	}
	st = r.Step(at(4*time.Second), []Instance{in("b", 1, api.InService), in("n1", 2, api.InService)})
	want(t, st, 1, nil, PhaseRollingBack)
	st = r.Step(at(5*time.Second), []Instance{in("b", 1, api.InService), in("n1", 2, api.InService), in("c", 1, api.InService)})
	want(t, st, 0, []string{"n1"}, PhaseRollingBack)
	st = r.Step(at(6*time.Second), []Instance{in("b", 1, api.InService), in("c", 1, api.InService)})
	want(t, st, 0, nil, PhaseRolledBack)
	if !strings.Contains(st.Reason, "back on v1 after failure of v2") {
		t.Errorf("reason %q", st.Reason)
	}
}

func TestRollbackThatFailsEndsInFailed(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 1, Policy: Policy{BatchTimeout: time.Minute}})
	r.Step(t0, []Instance{in("a", 1, api.InService)})
	r.Step(at(time.Second), []Instance{in("a", 1, api.InService), in("n", 2, api.InService)})
	r.Step(at(2*time.Second), []Instance{in("a", 1, api.Draining), in("n", 2, api.InService)})
	if err := r.Abort(at(3*time.Second), "operator"); err != nil {
		t.Fatal(err)
	}
	if err := r.Abort(at(3*time.Second), "again"); err != nil {
		t.Errorf("second abort: %v", err)
	}
	want(t, r.Step(at(4*time.Second), []Instance{in("n", 2, api.InService)}), 1, nil, PhaseRollingBack)
	old := in("a2", 1, api.Starting)
	old.Reason = "no such file"
	want(t, r.Step(at(5*time.Second), []Instance{in("n", 2, api.InService), old}), 0, nil, PhaseRollingBack)
	st := r.Step(at(65*time.Second), []Instance{in("n", 2, api.InService), old})
	want(t, st, 0, nil, PhaseFailed)
	if st.Failed == nil || st.Failed.InstanceID != "a2" || !strings.Contains(st.Reason, "rollback to v1 failed") {
		t.Errorf("step %+v failure %+v", st, st.Failed)
	}
	if err := r.Fail(at(66*time.Second), Failure{Reason: "x"}); !errors.Is(err, ErrFinished) {
		t.Errorf("fail after failed: %v", err)
	}
}

func TestFirstDeployRollsBackToNothing(t *testing.T) {
	r := mustNew(t, Spec{To: 1, Desired: 2})
	want(t, r.Step(t0, nil), 2, nil, PhaseSurging)
	if err := r.Abort(at(time.Second), "operator"); err != nil {
		t.Fatal(err)
	}
	want(t, r.Step(at(time.Second), []Instance{in("n1", 1, api.Starting), in("n2", 1, api.InService)}), 0, []string{"n1", "n2"}, PhaseRollingBack)
	want(t, r.Step(at(2*time.Second), nil), 0, nil, PhaseAborted)
}

func TestInstancesAlreadyEndedAreNotCrashes(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 1, Policy: Policy{MaxFailures: 1}})
	// A failed v2 instance from an earlier, aborted deploy is still
	// reported: it was never seen live by this rollout.
	st := r.Step(t0, []Instance{in("a", 1, api.InService), in("old", 2, api.Failed), in("a", 1, api.InService)})
	want(t, st, 1, nil, PhaseSurging)
	if p := r.Progress(at(time.Second)); len(p.Instances) != 1 || p.Elapsed != time.Second {
		t.Errorf("progress %+v", p)
	}
}

func TestStoppedOnPurposeIsNotACrash(t *testing.T) {
	r := mustNew(t, Spec{From: 1, To: 2, Desired: 1, Policy: Policy{MaxFailures: 1}})
	r.Step(t0, []Instance{in("a", 1, api.InService)})
	r.Step(at(time.Second), []Instance{in("a", 1, api.InService), in("n", 2, api.Starting)})
	st := r.Step(at(2*time.Second), []Instance{in("a", 1, api.InService), in("n", 2, api.Stopped)})
	want(t, st, 1, nil, PhaseSurging)
	st = r.Step(at(3*time.Second), []Instance{in("a", 1, api.InService), in("n2", 2, api.Starting)})
	want(t, st, 0, nil, PhaseWaitingHealthy)
	if st.Failed != nil || r.failures != 0 {
		t.Errorf("a stop on purpose counted as a crash: %+v", st.Failed)
	}
}

func TestProgress(t *testing.T) {
	r := mustNew(t, Spec{Group: "web", From: 1, To: 2, Desired: 2})
	r.Step(t0, []Instance{in("b", 1, api.InService), in("a", 1, api.InService)})
	r.Step(at(10*time.Second), []Instance{in("b", 1, api.InService), in("a", 1, api.InService), in("n", 2, api.InService), in("gone", 2, api.Failed)})
	p := r.Progress(at(12 * time.Second))
	// a was drained in that step; the controller has not reported it yet.
	wantInstances := []string{"a:draining", "b:in_service", "n:in_service"}
	var got []string
	for _, i := range p.Instances {
		got = append(got, i.ID+":"+i.State.String())
	}
	if !slices.Equal(got, wantInstances) || p.Phase != PhaseDraining || p.Done != 1 || p.Total != 2 ||
		p.Elapsed != 12*time.Second || p.Target != 2 || p.MaxSurge != 1 || p.MaxUnavailable != 0 || !p.Ended.IsZero() {
		t.Errorf("progress %+v, instances %v", p, got)
	}
	b, err := json.Marshal(p)
	if err != nil || !strings.Contains(string(b), `"phase":"draining"`) || !strings.Contains(string(b), `"state":"in_service"`) {
		t.Errorf("json %s, %v", b, err)
	}
}
