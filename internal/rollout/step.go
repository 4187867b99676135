package rollout

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Step is what the controller must do now, and where the rollout stands.
type Step struct {
	// Launch is how many instances of Release to launch now.
	Launch int
	// Release is the release to launch: To, or From while rolling back.
	Release int
	// Drain lists the instances to take out of the balancer's pool, drain
	// (up to the policy's DrainTimeout) and then stop. Each was observed
	// live. None is listed twice over the rollout's life, but for a drain
	// restored from a snapshot whose instance the first observation shows
	// live and not draining: it was never carried out (the controller that
	// decided it stopped first), so it is listed once more.
	Drain []string
	// Phase is the rollout's phase after this step.
	Phase Phase
	// Done of Total instances run Release and are in service.
	Done, Total int
	// Reason says where the rollout stands, in words, for the CLI.
	Reason string
	// Failed is why the rollout stopped going forward, from the step it
	// happened on to the end; nil if it did not (also after an Abort).
	Failed *Failure
	// Events are the transitions and actions since the previous Step,
	// each with its reason, for the controller to record in order.
	Events []string
}

// group is one observation classified against the target release.
type group struct {
	newReady, newWaiting, newUnhealthy []Instance
	oldReady, oldOther                 []Instance
	draining                           int // incl. those asked to drain
	total                              int // every live instance
}

// Step takes the instances observed now (every instance of the group, of
// any release, that the controller knows) and returns the actions to take.
// It assumes the actions of the previous Step were carried out before obs
// was taken: a launched instance appears in obs (pending at least) and a
// drained one as draining or gone.
//
// Rules, in order:
//  1. A crash of the target release (a failed instance, one that ended
//     without being drained, an in-place restart) counts; at
//     Policy.MaxFailures crashes, or when an instance of the target has not
//     been in service for Policy.BatchTimeout since it was first seen (or
//     since it turned unhealthy), going forward turns into rolling back,
//     and rolling back ends in Failed.
//  2. Old instances (any release but the target) that are not in service
//     are drained at once: they serve nothing.
//  3. Old instances in service are drained while at least
//     Desired-MaxUnavailable instances stay in service: with the default
//     MaxUnavailable 0 an old instance goes only when a new one in service
//     replaces it.
//  4. Once Desired target instances are in service, other target instances
//     (starting, unhealthy, surplus) are drained.
//  5. Target instances are launched up to Desired live ones (unhealthy
//     ones do not count), while the group has fewer than Desired+MaxSurge
//     live instances, draining ones included.
//  6. The rollout is done when exactly Desired target instances are in
//     service and nothing else runs: no old instance, none draining.
//
// Steps in a terminal phase return no actions. Instances with duplicate
// IDs after the first are ignored.
func (r *Rollout) Step(now time.Time, obs []Instance) Step {
	obs = dedupe(obs)
	r.last, r.lastNow = obs, now
	if r.phase.Terminal() {
		return r.result(0, nil)
	}
	wasBack := r.back
	if f := r.observe(now, obs); f != nil && !r.giveUp(now, f) {
		return r.result(0, nil)
	}
	if r.back && !wasBack {
		// The target changed: start its crash accounting from this
		// observation.
		if f := r.observe(now, obs); f != nil {
			r.giveUp(now, f)
			return r.result(0, nil)
		}
	}
	for id := range r.drains {
		if !slices.ContainsFunc(obs, func(in Instance) bool { return in.ID == id && in.State.Live() }) {
			delete(r.drains, id)
		}
	}
	again := r.undrained(obs)
	launch, drain := r.plan(now, r.classify(obs))
	return r.result(launch, append(again, drain...))
}

// undrained returns the drains restored from a snapshot (Restore) that
// the first observation of each shows live and not draining: decided and
// stored, but never carried out, because the controller that decided
// them stopped first (a crash, or a leader of the cluster killed or
// deposed between storing the step and acting on it). The controller that
// resumed the rollout adopted those instances as they run; listing them
// again makes it drain them, once. Restored drains not observed live are
// forgotten with the rest (Step).
func (r *Rollout) undrained(obs []Instance) []string {
	var ids []string
	for _, in := range obs {
		if !r.redrain[in.ID] {
			continue
		}
		delete(r.redrain, in.ID)
		if in.State.Live() && in.State != api.Draining {
			ids = append(ids, in.ID)
			r.event("rollout %s: drain instance %s (v%d, %s) again: its drain was decided before a restart or a change of leader and not carried out",
				r.name(), in.ID, in.Release, in.State)
		}
	}
	for id := range r.redrain {
		if _, ok := r.drains[id]; !ok {
			delete(r.redrain, id)
		}
	}
	return ids
}

// observe updates the crash accounting of the target release and returns
// a failure if the target has failed.
func (r *Rollout) observe(now time.Time, obs []Instance) *Failure {
	target := r.Target()
	seen := map[string]bool{}
	for _, in := range obs {
		if in.Release != target {
			continue
		}
		t := r.tracked[in.ID]
		if t == nil {
			if !in.State.Live() || in.State == api.Draining {
				continue // ended before this rollout saw it serve or start
			}
			t = &tracked{firstSeen: now, restarts: in.Restarts}
			r.tracked[in.ID] = t
		}
		seen[in.ID] = true
		if in.Reason != "" {
			t.reason = in.Reason
		}
		if in.State == api.InService {
			t.served = true
		}
		_, drained := r.drains[in.ID]
		if in.Restarts > t.restarts {
			r.crash(in.ID, fmt.Sprintf("restarted %d times", in.Restarts), t.reason)
			t.restarts = in.Restarts
		}
		switch {
		case t.ended:
		case in.State == api.Failed && !drained:
			t.ended = true
			r.crash(in.ID, "failed", t.reason)
		case !in.State.Live():
			t.ended = true // stopped on purpose, or failed while draining
		}
	}
	for _, id := range slices.Sorted(maps.Keys(r.tracked)) {
		if seen[id] {
			continue
		}
		t := r.tracked[id]
		delete(r.tracked, id)
		if _, drained := r.drains[id]; drained || t.ended || r.resumed {
			continue
		}
		r.crash(id, "ended without being drained", t.reason)
	}
	r.resumed = false
	if r.failures >= r.spec.Policy.MaxFailures {
		f := *r.lastCrash
		f.Reason = fmt.Sprintf("crashed %d times, crash loop (last: %s)", r.failures, f.Reason)
		return &f
	}
	return r.overdue(now, obs)
}

func (r *Rollout) crash(id, what, reason string) {
	r.failures++
	if reason != "" {
		what += ": " + reason
	}
	r.lastCrash = &Failure{InstanceID: id, Release: r.Target(), Reason: what}
	r.event("rollout %s: instance %s of v%d %s (crash %d; the rollout fails at %d)", r.name(), id, r.Target(), what,
		r.failures, r.spec.Policy.MaxFailures)
}

// overdue returns a failure for the first target instance (by ID) that has
// not been in service for BatchTimeout.
func (r *Rollout) overdue(now time.Time, obs []Instance) *Failure {
	limit := r.spec.Policy.BatchTimeout
	for _, in := range obs {
		t := r.tracked[in.ID]
		if t == nil || in.Release != r.Target() {
			continue
		}
		if _, drained := r.drains[in.ID]; drained {
			continue
		}
		start := t.firstSeen
		if in.State == api.Unhealthy && in.Since.After(start) {
			start = in.Since
		}
		if (in.State != api.Pending && in.State != api.Starting && in.State != api.Unhealthy) || now.Sub(start) < limit {
			continue
		}
		what := fmt.Sprintf("not in service %s after launch (%s", limit, in.State)
		if in.State == api.Unhealthy {
			what = fmt.Sprintf("unhealthy for %s (", limit)
		}
		if t.reason != "" {
			what += ": " + t.reason
		}
		what = strings.Replace(what+")", "(: ", "(", 1)
		what = strings.TrimSuffix(what, " ()")
		return &Failure{InstanceID: in.ID, Release: in.Release, Reason: what}
	}
	return nil
}

func (r *Rollout) classify(obs []Instance) group {
	var g group
	target := r.Target()
	for _, in := range obs {
		if !in.State.Live() {
			continue
		}
		g.total++
		if _, drained := r.drains[in.ID]; drained || in.State == api.Draining {
			g.draining++
			continue
		}
		switch {
		case in.Release == target && in.State == api.InService:
			g.newReady = append(g.newReady, in)
		case in.Release == target && in.State == api.Unhealthy:
			g.newUnhealthy = append(g.newUnhealthy, in)
		case in.Release == target:
			g.newWaiting = append(g.newWaiting, in)
		case in.State == api.InService:
			g.oldReady = append(g.oldReady, in)
		default:
			g.oldOther = append(g.oldOther, in)
		}
	}
	oldest := func(a, b Instance) int {
		return cmp.Or(a.Since.Compare(b.Since), strings.Compare(a.ID, b.ID))
	}
	slices.SortFunc(g.oldReady, oldest)
	slices.SortFunc(g.newReady, oldest)
	return g
}

// plan applies rules 2 to 6 to g and sets the phase.
func (r *Rollout) plan(now time.Time, g group) (launch int, drain []string) {
	desired, target := r.desired(), r.Target()
	floor := desired - r.unavailable
	drainOne := func(in Instance, why string) {
		r.drains[in.ID] = now
		drain = append(drain, in.ID)
		g.draining++
		r.event("rollout %s: drain instance %s (v%d, %s): %s", r.name(), in.ID, in.Release, in.State, why)
	}
	for _, in := range g.oldOther {
		drainOne(in, "not in service, not on the target release")
	}
	ready := len(g.newReady) + len(g.oldReady)
	n := min(len(g.oldReady), ready-floor)
	for _, in := range g.oldReady[:max(n, 0)] {
		drainOne(in, fmt.Sprintf("%d instances in service, %d of v%d; at least %d must stay", ready, len(g.newReady), target, floor))
		ready--
	}
	oldLeft := len(g.oldReady) - max(n, 0)
	if len(g.newReady) >= desired {
		for _, in := range slices.Concat(g.newWaiting, g.newUnhealthy) {
			drainOne(in, fmt.Sprintf("surplus: %d of v%d already in service", len(g.newReady), target))
		}
		g.newWaiting, g.newUnhealthy = nil, nil
		if oldLeft == 0 {
			// Surplus in service (an unhealthy instance recovered after
			// its replacement came up): the newest go.
			for _, in := range g.newReady[desired:] {
				drainOne(in, fmt.Sprintf("surplus: %d of v%d in service, %d desired", len(g.newReady), target, desired))
			}
			g.newReady = g.newReady[:desired]
		}
	}
	live := len(g.newReady) + len(g.newWaiting)
	room := desired + r.surge - g.total
	launch = max(0, min(desired-live, room))
	if launch > 0 {
		r.event("rollout %s: launch %d instance(s) of v%d: %d of %d live, %d of %d instances running (max surge %d)",
			r.name(), launch, target, live, desired, g.total, desired+r.surge, r.surge)
	}
	r.done = min(len(g.newReady), desired)

	finished := launch == 0 && len(drain) == 0 && oldLeft == 0 && len(g.oldOther) == 0 &&
		g.draining == 0 && len(g.newReady) == desired && len(g.newWaiting) == 0 && len(g.newUnhealthy) == 0
	phase := PhaseRollingBack
	switch {
	case finished && !r.back:
		phase = PhaseDone
	case finished && r.aborted:
		phase = PhaseAborted
	case finished:
		phase = PhaseRolledBack
	case r.back:
	case launch > 0:
		phase = PhaseSurging
	case len(g.newWaiting)+len(g.newUnhealthy) > 0:
		phase = PhaseWaitingHealthy
	default:
		phase = PhaseDraining
	}
	reason := r.summary(g, oldLeft)
	if phase.Terminal() {
		r.ended = now
		reason = fmt.Sprintf("%d of %d instances of v%d in service", len(g.newReady), desired, target)
		if r.back {
			reason = fmt.Sprintf("back on v%d after %s: %s", r.spec.From, r.whyBack(), reason)
		}
	}
	if phase != r.phase || phase.Terminal() {
		r.event("rollout %s: %s: %s", r.name(), phase, reason)
	}
	r.phase, r.reason = phase, reason
	return launch, drain
}

// desired is how many instances of the target release the group must end
// with: none when rolling back a first deploy.
func (r *Rollout) desired() int {
	if r.Target() == 0 {
		return 0
	}
	return r.spec.Desired
}

func (r *Rollout) whyBack() string {
	if r.aborted {
		return "abort"
	}
	return "failure of v" + fmt.Sprint(r.spec.To)
}

// summary says where the group stands in one line.
func (r *Rollout) summary(g group, oldLeft int) string {
	parts := []string{fmt.Sprintf("v%d: %d of %d in service", r.Target(), len(g.newReady), r.desired())}
	if n := len(g.newWaiting); n > 0 {
		parts = append(parts, fmt.Sprintf("%d starting", n))
	}
	if n := len(g.newUnhealthy); n > 0 {
		parts = append(parts, fmt.Sprintf("%d unhealthy", n))
	}
	if oldLeft > 0 {
		parts = append(parts, fmt.Sprintf("%d old in service", oldLeft))
	}
	if g.draining > 0 {
		parts = append(parts, fmt.Sprintf("%d draining (up to %s)", g.draining, r.spec.Policy.DrainTimeout))
	}
	switch {
	case r.back && r.spec.From == 0:
		return fmt.Sprintf("stopping v%d: %d instances left, %d draining", r.spec.To, oldLeft+len(g.oldOther), g.draining)
	case r.back:
		return "rolling back to v" + fmt.Sprint(r.spec.From) + ": " + strings.Join(parts, ", ")
	}
	return strings.Join(parts, ", ")
}

func (r *Rollout) result(launch int, drain []string) Step {
	s := Step{
		Launch:  launch,
		Release: r.Target(),
		Drain:   drain,
		Phase:   r.phase,
		Done:    r.done,
		Total:   r.desired(),
		Reason:  r.reason,
		Events:  r.events,
	}
	if r.failure != nil {
		f := *r.failure
		s.Failed = &f
	}
	r.events = nil
	return s
}

func dedupe(obs []Instance) []Instance {
	out := make([]Instance, 0, len(obs))
	seen := make(map[string]bool, len(obs))
	for _, in := range obs {
		if !seen[in.ID] {
			seen[in.ID] = true
			out = append(out, in)
		}
	}
	return out
}
