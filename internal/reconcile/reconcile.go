// Package reconcile decides, for one group, what to do to move the observed
// instances towards the desired state: launch, replace (launch first), drain
// and stop. It is pure: no clocks, no I/O, no goroutines. The controller
// observes, calls Decide, carries out the actions and records them as
// events.
//
// Instance lifecycle (the states the controller reports in Instance.State):
//
//	pending --> starting --> in_service --> draining --> stopped
//	               |             |   ^
//	               |  (exit or   |   | (checks pass again)
//	               |  no health  v   |
//	               |  in grace) unhealthy --(replacement in service)--> draining
//	               v
//	             failed  (exited, or never healthy: stopped at once, replaced)
//
// An in_service instance that exits becomes failed too: its process is gone,
// so there is nothing to drain. Failed and unhealthy both lead to
// replacement. An unhealthy instance keeps running (the balancer sends it no
// new requests unless no target is healthy) until its replacement is in
// service: launch before terminate.
//
// An instance that must leave where it runs (Instance.Move: its host
// drains) is moved the same way while it serves: a replacement is launched
// first, and the instance is retired once that replacement is in service,
// so the group never has fewer instances in service during the move.
package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/autoscale"
)

// Instance is the controller's observation of one instance.
type Instance struct {
	ID      string
	Release int // release version it runs
	State   api.State
	// Started is when the instance was launched; newer instances are
	// stopped first on scale-down.
	Started time.Time
	// Replaces is the ID of the unhealthy instance this one was launched to
	// replace, if any.
	Replaces string
	// Protected instances are never chosen for a scale-in (per-instance
	// scale-in protection); they still stop when the group goes to zero
	// or fails.
	Protected bool
	// Move, when set, says why the instance must leave where it runs
	// ("off host h1 (draining)"). An instance in service with a Move is
	// replaced launch first: a replacement (Replaces = its ID) is launched
	// within MaxLaunching, and the instance is retired once that
	// replacement is in service. Until then it keeps serving, but counts
	// as missing, like an unhealthy one. Move is ignored in other states.
	Move string
}

// Desired is the target state of a group.
type Desired struct {
	Release int // release new instances run
	Count   int // instances in service
	// MaxLaunching bounds the instances starting at once (pending or
	// starting) to replace failed or unhealthy ones. Values below 1 mean 1.
	MaxLaunching int
	// Grow is how many of the missing instances are new capacity (a
	// scale-out or the first start) rather than replacements: they launch
	// all at once, beyond MaxLaunching, so that a scale-out takes one boot
	// time, not several. Crash-loop backoff still holds them.
	Grow int
}

// ActionKind says what an Action does.
type ActionKind uint8

const (
	// Launch starts a new instance of Action.Release.
	Launch ActionKind = iota
	// Retire takes Action.Instance out of the pool, waits for its
	// in-flight requests (bounded by the drain timeout) and stops it.
	Retire
	// Stop stops Action.Instance at once; it is not in the pool.
	Stop
)

// String returns "launch", "retire" or "stop".
func (k ActionKind) String() string {
	switch k {
	case Launch:
		return "launch"
	case Retire:
		return "retire"
	case Stop:
		return "stop"
	}
	return fmt.Sprintf("action(%d)", uint8(k))
}

// Action is one step the controller must carry out.
type Action struct {
	Kind     ActionKind
	Release  int    // Launch: release to run
	Replaces string // Launch: the unhealthy instance it replaces, if any
	Instance string // Retire, Stop: the instance
	Reason   string // for the event
}

// Plan is the result of Decide.
type Plan struct {
	Actions []Action
	// Blocked is non-empty when launches are held back by crash-loop
	// backoff; it says why and until when.
	Blocked string
	// RetryAt is when Decide should run again even if nothing changes
	// (the end of a backoff); zero means only on the next change.
	RetryAt time.Time
}

// Decide returns the actions that move obs towards d at time now. backoff
// holds the crash-loop state of d.Release. Instances in terminal states are
// ignored. Decide is deterministic and does not modify its arguments.
//
// Rules, in order:
//  1. Live instances (pending, starting, in_service) beyond d.Count are
//     removed: not-yet-serving ones first (newest first), then those in
//     service by the termination policy (autoscale.ChooseScaleIn: oldest
//     release first, then oldest instance; never a protected one).
//  2. Missing live instances are launched, d.Grow of them at once plus at
//     most MaxLaunching starting at once, unless the release is in backoff. A launch while an unhealthy
//     instance waits for a replacement is marked as its replacement.
//  3. Unhealthy instances are retired once enough instances are in
//     service to meet d.Count without them.
//
// An instance in service with a Move is, for these rules, like an
// unhealthy one (it is not live, it waits for a replacement after the
// unhealthy ones), except that it is also retired as soon as its own
// replacement is in service.
func Decide(now time.Time, d Desired, obs []Instance, backoff Backoff) Plan {
	var plan Plan
	maxLaunching := max(d.MaxLaunching, 1)
	count := max(d.Count, 0)

	var live, unhealthy, moving []Instance
	inService, launching := 0, 0
	replaced := map[string]bool{}     // id -> a replacement starts
	replacedBy := map[string]string{} // id -> its replacement in service
	for _, in := range obs {
		switch in.State {
		case api.Pending, api.Starting:
			launching++
			live = append(live, in)
			if in.Replaces != "" {
				replaced[in.Replaces] = true
			}
		case api.InService:
			if in.Replaces != "" {
				replacedBy[in.Replaces] = in.ID
			}
			if in.Move != "" {
				moving = append(moving, in)
				continue
			}
			inService++
			live = append(live, in)
		case api.Unhealthy:
			unhealthy = append(unhealthy, in)
		}
	}

	// 1. Excess.
	if excess := len(live) - count; excess > 0 {
		for _, v := range scaleInVictims(live, excess, d.Release) {
			act := Action{Kind: Stop, Instance: v.ID, Reason: fmt.Sprintf("scale down to %d", count)}
			if v.State == api.InService {
				act.Kind = Retire
				inService--
			} else {
				launching--
			}
			plan.Actions = append(plan.Actions, act)
		}
	}

	// 2. Missing.
	if missing := count - len(live); missing > 0 {
		n := min(missing, max(maxLaunching-launching, 0)+max(d.Grow, 0))
		if n > 0 {
			if at := backoff.NextLaunch(); now.Before(at) {
				plan.Blocked = fmt.Sprintf("release v%d crashed %d times in a row; next launch in %s",
					d.Release, backoff.Failures, at.Sub(now).Round(time.Millisecond))
				plan.RetryAt = at
				n = 0
			}
		}
		// Unhealthy, then moving, instances without a replacement yet.
		var waiting []Action
		for _, u := range unhealthy {
			if !replaced[u.ID] {
				waiting = append(waiting, Action{Replaces: u.ID, Reason: fmt.Sprintf("replace unhealthy instance %s", u.ID)})
			}
		}
		for _, m := range moving {
			if !replaced[m.ID] && replacedBy[m.ID] == "" {
				waiting = append(waiting, Action{Replaces: m.ID, Reason: fmt.Sprintf("move %s %s", m.ID, m.Move)})
			}
		}
		for i := range n {
			act := Action{Kind: Launch, Release: d.Release}
			if i < len(waiting) {
				act.Replaces, act.Reason = waiting[i].Replaces, waiting[i].Reason
			} else {
				act.Reason = fmt.Sprintf("%d of %d instances live", len(live)+i, count)
			}
			plan.Actions = append(plan.Actions, act)
		}
	}

	// 3. Unhealthy and moving instances whose replacements serve.
	if inService >= count {
		for _, u := range unhealthy {
			plan.Actions = append(plan.Actions, Action{Kind: Retire, Instance: u.ID,
				Reason: fmt.Sprintf("unhealthy; %d healthy instances in service", inService)})
		}
	}
	for _, m := range moving {
		switch r := replacedBy[m.ID]; {
		case r != "":
			plan.Actions = append(plan.Actions, Action{Kind: Retire, Instance: m.ID,
				Reason: fmt.Sprintf("moved %s: replacement %s in service", m.Move, r)})
		case inService >= count:
			plan.Actions = append(plan.Actions, Action{Kind: Retire, Instance: m.ID,
				Reason: fmt.Sprintf("moved %s: %d other instances in service", m.Move, inService)})
		}
	}
	return plan
}

// scaleInVictims returns the n live instances to remove: those not yet
// serving first (newest first, they have taken no traffic), then those in
// service chosen by the termination policy (autoscale.ChooseScaleIn), so
// that a scale-in also retires leftovers of older releases first.
func scaleInVictims(live []Instance, n int, release int) []Instance {
	var waiting, serving []Instance
	for _, in := range live {
		if in.State == api.InService {
			serving = append(serving, in)
		} else {
			waiting = append(waiting, in)
		}
	}
	slices.SortStableFunc(waiting, func(a, b Instance) int {
		return cmp.Or(b.Started.Compare(a.Started), cmp.Compare(b.ID, a.ID))
	})
	out := slices.Clone(waiting[:min(n, len(waiting))])
	if rest := n - len(out); rest > 0 {
		cands := make([]autoscale.Instance, len(serving))
		byID := make(map[string]Instance, len(serving))
		for i, in := range serving {
			cands[i] = autoscale.Instance{ID: in.ID, Release: in.Release, Started: in.Started, Protected: in.Protected}
			byID[in.ID] = in
		}
		for _, id := range autoscale.ChooseScaleIn(cands, rest, release) {
			out = append(out, byID[id])
		}
	}
	return out
}
