package rollout

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// behaviour is how the instances of one release behave in the simulation.
type behaviour int

const (
	healthy      behaviour = iota // in service after the boot delay
	neverHealthy                  // stays starting, failing its checks
	crashes                       // fails after the boot delay
)

// sim is a fake actuator: the outside world the controller drives. It
// turns a Step's launches into instances that come into service (or not)
// after a boot delay and its drains into instances that stop after a
// drain delay, on the bubble's fake clock.
type sim struct {
	t          *testing.T
	boot       time.Duration
	drainDelay time.Duration
	behave     map[int]behaviour
	// keepFailed keeps failed instances in observations (as the
	// controller may report them once); otherwise they vanish at once.
	keepFailed bool

	mu      sync.Mutex
	inst    map[string]*Instance
	timers  []*time.Timer
	seq     int
	drained map[string]bool
	changed chan struct{}
}

func newSim(t *testing.T, release, n int) *sim {
	s := &sim{t: t, boot: 20 * time.Second, drainDelay: 5 * time.Second, behave: map[int]behaviour{},
		inst: map[string]*Instance{}, drained: map[string]bool{}, changed: make(chan struct{}, 1)}
	for range n {
		id := s.add(release)
		s.inst[id].State = api.InService
	}
	return s
}

func (s *sim) add(release int) string {
	s.seq++
	id := fmt.Sprintf("v%d-%02d", release, s.seq)
	s.inst[id] = &Instance{ID: id, Release: release, State: api.Starting, Since: time.Now()}
	return id
}

func (s *sim) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *sim) after(d time.Duration, f func()) {
	s.timers = append(s.timers, time.AfterFunc(d, func() {
		s.mu.Lock()
		f()
		s.mu.Unlock()
		s.notify()
	}))
}

// set moves instance id from state from to state to; it does nothing if id
// is gone or has left from meanwhile (a drained starting instance).
func (s *sim) set(id string, from, to api.State, reason string) {
	in := s.inst[id]
	if in == nil || in.State != from {
		return
	}
	in.State, in.Since, in.Reason = to, time.Now(), reason
	if to == api.Failed && !s.keepFailed || to == api.Stopped {
		delete(s.inst, id)
	}
}

func (s *sim) observe() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	var obs []Instance
	for _, in := range s.inst {
		obs = append(obs, *in)
	}
	slices.SortFunc(obs, func(a, b Instance) int { return a.Since.Compare(b.Since) })
	return obs
}

func (s *sim) apply(st Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range st.Launch {
		id := s.add(st.Release)
		switch s.behave[st.Release] {
		case healthy:
			s.after(s.boot, func() { s.set(id, api.Starting, api.InService, "ok") })
		case neverHealthy:
			s.inst[id].Reason = "status 500 from /health"
		case crashes:
			s.after(s.boot, func() { s.set(id, api.Starting, api.Failed, "exited with code 1") })
		}
	}
	for _, id := range st.Drain {
		in := s.inst[id]
		if in == nil || !in.State.Live() || in.State == api.Draining || s.drained[id] {
			s.t.Errorf("step drains %s, which is not a live undrained instance (%v)", id, in)
			continue
		}
		s.drained[id] = true
		in.State, in.Since = api.Draining, time.Now()
		s.after(s.drainDelay, func() { s.set(id, api.Draining, api.Stopped, "drained") })
	}
}

// counts returns the live instances and those in service, by release.
func (s *sim) counts() (live int, ready map[int]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ready = map[int]int{}
	for _, in := range s.inst {
		if in.State.Live() {
			live++
		}
		if in.State == api.InService {
			ready[in.Release]++
		}
	}
	return live, ready
}

func (s *sim) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.timers {
		t.Stop()
	}
}

// drive plays the controller: step, check the capacity invariants, act,
// wait for a change or a second, until the rollout ends. onStep may act
// on the rollout between steps (Abort). It returns the last step.
func drive(t *testing.T, s *sim, r *Rollout, onStep func(Step)) Step {
	t.Helper()
	desired := r.Spec().Desired
	surge, unavailable := r.Limits()
	check := func(when string) {
		live, ready := s.counts()
		inService := 0
		for _, n := range ready {
			inService += n
		}
		if live > desired+surge {
			t.Errorf("%s: %d instances live, more than %d+%d", when, live, desired, surge)
		}
		if inService < desired-unavailable {
			t.Errorf("%s: %d instances in service, fewer than %d-%d (%v)", when, inService, desired, unavailable, ready)
		}
	}
	for i := range 10000 {
		st := r.Step(time.Now(), s.observe())
		for _, e := range st.Events {
			t.Logf("%s event: %s", time.Now().Format("15:04:05"), e)
		}
		check(fmt.Sprintf("step %d before acting", i))
		s.apply(st)
		check(fmt.Sprintf("step %d after acting", i))
		if t.Failed() || st.Phase.Terminal() {
			return st
		}
		if onStep != nil {
			onStep(st)
		}
		select {
		case <-s.changed:
		case <-time.After(time.Second):
		}
		// Let every timer due now fire before observing.
		synctest.Wait()
	}
	t.Fatal("rollout did not end in 10000 steps")
	return Step{}
}

// wantOnly asserts that exactly n instances of release run, all in service.
func wantOnly(t *testing.T, s *sim, release, n int) {
	t.Helper()
	for _, in := range s.observe() {
		if in.State.Live() && (in.Release != release || in.State != api.InService) {
			t.Errorf("instance %s of v%d left %s; want only v%d in service", in.ID, in.Release, in.State, release)
		}
	}
	if _, ready := s.counts(); ready[release] != n {
		t.Errorf("%d instances of v%d in service, want %d", ready[release], release, n)
	}
}

func TestSimulatedRollouts(t *testing.T) {
	cases := []struct {
		name        string
		from, to    int
		desired     int
		policy      Policy
		behave      behaviour
		keepFailed  bool
		abortAfter  int // abort once this many new instances are in service; 0: never
		want        Phase
		within      time.Duration // the rollout ends within this much fake time
		wantFailure string
	}{
		{name: "happy path 4", from: 3, to: 4, desired: 4, want: PhaseDone, within: 4 * (20 + 5 + 2) * time.Second},
		{name: "single server", from: 1, to: 2, desired: 1, want: PhaseDone, within: 30 * time.Second},
		{name: "surge 2 unavailable 1", from: 1, to: 2, desired: 4,
			policy: Policy{MaxSurge: Count(2), MaxUnavailable: Count(1)}, want: PhaseDone, within: 2 * (20 + 5 + 2) * time.Second},
		{name: "unavailable only", from: 1, to: 2, desired: 3,
			policy: Policy{MaxSurge: Count(0), MaxUnavailable: Percent(34)}, want: PhaseDone, within: 3 * (20 + 5 + 2) * time.Second},
		{name: "percent surge 10", from: 1, to: 2, desired: 10,
			policy: Policy{MaxSurge: Percent(30)}, want: PhaseDone, within: 4 * (20 + 5 + 2) * time.Second},
		{name: "rollback to an older release is a rollout", from: 7, to: 5, desired: 3, want: PhaseDone, within: 3 * (20 + 5 + 2) * time.Second},
		{name: "never healthy rolls back", from: 3, to: 4, desired: 4, behave: neverHealthy,
			policy: Policy{BatchTimeout: time.Minute}, want: PhaseRolledBack, within: time.Minute + 5*time.Second + 3*time.Second,
			wantFailure: "not in service 1m0s after launch (starting: status 500 from /health)"},
		{name: "never healthy single server", from: 3, to: 4, desired: 1, behave: neverHealthy,
			policy: Policy{BatchTimeout: time.Minute}, want: PhaseRolledBack, within: time.Minute + 5*time.Second + 3*time.Second},
		{name: "never healthy with unavailable", from: 3, to: 4, desired: 4, behave: neverHealthy,
			policy: Policy{MaxSurge: Count(1), MaxUnavailable: Count(1), BatchTimeout: time.Minute},
			want:   PhaseRolledBack, within: time.Minute + 20*time.Second + 5*time.Second + 5*time.Second},
		{name: "crash loop rolls back", from: 3, to: 4, desired: 4, behave: crashes,
			want: PhaseRolledBack, within: 3*20*time.Second + 5*time.Second + 5*time.Second, wantFailure: "crash loop"},
		{name: "crash loop reported failed", from: 3, to: 4, desired: 2, behave: crashes, keepFailed: true,
			policy: Policy{MaxFailures: 2}, want: PhaseRolledBack, within: 2*20*time.Second + 5*time.Second + 5*time.Second,
			wantFailure: "crashed 2 times, crash loop (last: failed: exited with code 1)"},
		{name: "abort midway", from: 3, to: 4, desired: 4, abortAfter: 2, want: PhaseAborted, within: 10 * time.Minute},
		{name: "abort single server", from: 3, to: 4, desired: 1, abortAfter: 1, want: PhaseAborted, within: 10 * time.Minute},
		{name: "abort with surge 2 unavailable 1", from: 3, to: 4, desired: 5, abortAfter: 3,
			policy: Policy{MaxSurge: Count(2), MaxUnavailable: Count(1)}, want: PhaseAborted, within: 10 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newSim(t, tc.from, tc.desired)
				defer s.stop()
				s.behave[tc.to] = tc.behave
				s.keepFailed = tc.keepFailed
				start := time.Now()
				r, err := New(start, Spec{Group: "web", From: tc.from, To: tc.to, Desired: tc.desired, Policy: tc.policy})
				if err != nil {
					t.Fatal(err)
				}
				aborted := false
				last := drive(t, s, r, func(st Step) {
					if tc.abortAfter > 0 && !aborted && st.Release == tc.to && st.Done >= tc.abortAfter {
						aborted = true
						if err := r.Abort(time.Now(), "operator ran shoal deploy --abort"); err != nil {
							t.Errorf("abort: %v", err)
						}
					}
				})
				if last.Phase != tc.want {
					t.Fatalf("ended in %s (%s), want %s", last.Phase, last.Reason, tc.want)
				}
				if tc.abortAfter > 0 && !aborted {
					t.Errorf("never aborted")
				}
				if took := time.Since(start); took > tc.within {
					t.Errorf("took %s, want within %s", took, tc.within)
				}
				if p := r.Progress(time.Now()); p.Elapsed != time.Since(start) || p.Phase != tc.want {
					t.Errorf("progress %s after %s, want %s after %s", p.Phase, p.Elapsed, tc.want, time.Since(start))
				}
				release := tc.to
				if tc.want != PhaseDone {
					release = tc.from
				}
				wantOnly(t, s, release, tc.desired)
				if tc.wantFailure != "" && (last.Failed == nil || !strings.Contains(last.Failed.Reason, tc.wantFailure)) {
					t.Errorf("failure %v, want one containing %q", last.Failed, tc.wantFailure)
				}
				if tc.want == PhaseRolledBack && (last.Failed == nil || last.Failed.InstanceID == "" || last.Failed.Release != tc.to) {
					t.Errorf("failure %+v does not name an instance of v%d", last.Failed, tc.to)
				}
			})
		})
	}
}
