package rollout

import (
	"errors"
	"fmt"
	"time"
)

// ErrFinished is returned by [Rollout.Abort] and [Rollout.Fail] when the
// rollout is already in a terminal phase.
var ErrFinished = errors.New("rollout already finished")

// Spec says what a rollout does: move Group's Desired instances from
// release From to release To under Policy.
type Spec struct {
	// Group names the group in messages; it may be empty.
	Group string `json:"group,omitempty"`
	// From is the release the group serves now and returns to on
	// failure. Zero means none (a first deploy): returning means
	// stopping every instance of To.
	From int `json:"from"`
	// To is the release to roll to; positive, not From. Rolling back to
	// an earlier release is a rollout with To < From.
	To int `json:"to"`
	// Desired is the group's instance count, fixed for the rollout: the
	// controller holds scaling while a rollout runs. In [0, 100000].
	Desired int `json:"desired"`
	// Policy is the deploy policy; its zero value is the default policy.
	Policy Policy `json:"policy"`
}

func (s Spec) validate() error {
	var errs []error
	if s.To <= 0 {
		errs = append(errs, fmt.Errorf("release to roll to must be positive, not %d", s.To))
	}
	if s.From < 0 {
		errs = append(errs, fmt.Errorf("release to roll from must not be negative, not %d", s.From))
	}
	if s.From == s.To {
		errs = append(errs, fmt.Errorf("group already on release v%d", s.To))
	}
	if s.Desired < 0 || s.Desired > maxQuantity {
		errs = append(errs, fmt.Errorf("desired count %d is not in [0, %d]", s.Desired, maxQuantity))
	}
	if err := s.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("deploy policy: %w", err))
	}
	return errors.Join(errs...)
}

// Rollout is the state machine of one rolling deploy of a group. The
// controller drives it: it observes the group's instances, calls
// [Rollout.Step] with them and the time, carries out the Step's launches
// and drains, records its events, and calls Step again when something
// changes (an instance changes state) or at least every few seconds
// (deadlines are checked only in Step).
//
// A Rollout is not safe for concurrent use; the controller calls it under
// its own lock. It keeps no clock and does no I/O.
type Rollout struct {
	spec               Spec // Policy with defaults filled in
	surge, unavailable int

	phase   Phase
	back    bool // going back to spec.From
	aborted bool // going back because of Abort
	started time.Time
	ended   time.Time
	failure *Failure // why it stopped going forward; nil if it did not

	// Crash accounting for the release now rolled to (To, or From when
	// going back); reset when the direction changes.
	failures  int
	lastCrash *Failure
	tracked   map[string]*tracked

	// drains holds the instances this rollout asked to drain, until they
	// are no longer observed. An instance in it counts as draining even
	// when an observation still shows it in service.
	drains map[string]time.Time
	// redrain holds the drains restored from a snapshot whose carrying
	// out no observation has shown yet (see undrained).
	redrain map[string]bool

	// resumed is set by Restore: instances that vanished while the
	// controller was down are not counted as crashes.
	resumed bool

	events  []string // queued for the next Step
	last    []Instance
	done    int
	reason  string
	lastNow time.Time
}

// tracked is what the rollout remembers about one live instance of the
// release it rolls to.
type tracked struct {
	firstSeen time.Time
	served    bool // seen in service at least once
	restarts  int
	ended     bool // seen failed or stopped; a failure is counted once
	reason    string
}

// New starts a rollout at now. It returns an error, listing every problem,
// if spec is invalid. The first [Rollout.Step] decides the first launches.
func New(now time.Time, spec Spec) (*Rollout, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("new rollout: %w", err)
	}
	spec.Policy = spec.Policy.WithDefaults()
	r := &Rollout{spec: spec, started: now, phase: PhaseSurging, lastNow: now}
	r.init()
	r.reason = fmt.Sprintf("rollout %s started", r.name())
	r.event("rollout %s of %d instances started (max surge %d, max unavailable %d, batch timeout %s)",
		r.name(), spec.Desired, r.surge, r.unavailable, spec.Policy.BatchTimeout)
	return r, nil
}

func (r *Rollout) init() {
	r.surge, r.unavailable = r.spec.Policy.Resolve(r.spec.Desired)
	if r.tracked == nil {
		r.tracked = map[string]*tracked{}
	}
	if r.drains == nil {
		r.drains = map[string]time.Time{}
	}
	if r.redrain == nil {
		r.redrain = map[string]bool{}
	}
}

// Spec returns the rollout's spec, with the policy's defaults filled in.
func (r *Rollout) Spec() Spec { return r.spec }

// Phase returns the current phase.
func (r *Rollout) Phase() Phase { return r.phase }

// Target is the release the rollout now moves the group to: To going
// forward, From while rolling back. Launches are always of Target.
func (r *Rollout) Target() int {
	if r.back {
		return r.spec.From
	}
	return r.spec.To
}

// Limits returns the resolved surge and unavailability, in instances.
func (r *Rollout) Limits() (surge, unavailable int) { return r.surge, r.unavailable }

// Abort stops going forward and returns the group to From with the same
// rules as a rollout (launch before terminate), ending in [PhaseAborted]. reason
// says who asked and why; it goes into the event. It returns
// [ErrFinished] in a terminal phase; while already rolling back it changes
// nothing and returns nil. The next Step carries the event and the first
// actions of the way back.
func (r *Rollout) Abort(now time.Time, reason string) error {
	if r.phase.Terminal() {
		return ErrFinished
	}
	if r.back {
		return nil
	}
	r.aborted = true
	r.goBack(fmt.Sprintf("aborted: %s", reason))
	return nil
}

// Fail reports a failure the rollout cannot observe itself, such as a
// launch the actuator could not carry out. Going forward, it rolls back
// as a failed batch does, ending in [PhaseRolledBack]; while rolling back, the
// rollout ends in [PhaseFailed]. It returns [ErrFinished] in a terminal phase.
func (r *Rollout) Fail(now time.Time, f Failure) error {
	if r.phase.Terminal() {
		return ErrFinished
	}
	r.giveUp(now, &f)
	return nil
}

// giveUp records f and either turns back (going forward; it returns true)
// or ends in Failed (already going back).
func (r *Rollout) giveUp(now time.Time, f *Failure) bool {
	if r.back {
		if r.failure == nil {
			r.failure = f
		}
		r.phase = PhaseFailed
		r.ended = now
		r.reason = fmt.Sprintf("rollback to v%d failed: %s; the group is left as it is, fix the cause and deploy again", r.spec.From, f)
		r.event("rollout %s failed: %s", r.name(), r.reason)
		return false
	}
	r.failure = f
	r.goBack(f.String())
	return true
}

func (r *Rollout) goBack(why string) {
	r.back = true
	r.phase = PhaseRollingBack
	r.failures, r.lastCrash = 0, nil
	clear(r.tracked)
	r.reason = fmt.Sprintf("rolling back to v%d: %s", r.spec.From, why)
	if r.spec.From == 0 {
		r.reason = fmt.Sprintf("stopping v%d, there is no earlier release: %s", r.spec.To, why)
	}
	r.event("rollout %s: %s", r.name(), r.reason)
}

func (r *Rollout) name() string {
	s := fmt.Sprintf("v%d -> v%d", r.spec.From, r.spec.To)
	if r.spec.From == 0 {
		s = fmt.Sprintf("to v%d", r.spec.To)
	}
	if r.spec.Group != "" {
		s = r.spec.Group + " " + s
	}
	return s
}

func (r *Rollout) event(format string, args ...any) {
	r.events = append(r.events, fmt.Sprintf(format, args...))
}
