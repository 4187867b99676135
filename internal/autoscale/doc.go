// Package autoscale owns the auto-scaling decision of a group: it turns
// metrics measured at Shoal's own balancer and hosts into a desired
// instance count, fast up and slow down. It is pure: no goroutines, no
// clock (every call takes the time), no I/O and no imports of other Shoal
// packages. The controller is the metrics source and the actuator:
//
//	balancer/hosts --Sample--> Window --Decide--> Decision --> controller (launch, drain)
//
// # Metrics
//
// A [Sample] is one observation of the group's in-service instances with
// cumulative counters (requests, CPU seconds, latency histogram) and
// gauges (in-flight requests). A [Window] keeps the samples of the last
// Config.Window (5s by default) and aggregates them per [Metric]. An
// instance counts in a metric only after it has been in service for
// Config.Warmup ("warmed up"); a value is always per warmed-up instance
// and per second of the interval it was observed in (see [Window.Value]).
//
// # The decision
//
// Each target-tracking policy proposes ceil(n * value / target), where n
// is the number of warmed-up instances it was measured on. Instances that
// are not yet warmed up (launching or warming) are assumed to carry no load
// when deciding to scale out, so a scale-out in progress is not repeated
// (no overshoot), and to carry exactly the target load when deciding to
// scale in, so they are never removed on the strength of a metric they did
// not take part in (the same rule as the Kubernetes HPA for unready pods).
// A value within Config.Tolerance of its target proposes no change. A
// step-scaling policy proposes current plus the adjustment of the step
// its value falls in.
//
// Scale out fast, scale in slowly. The Window average ramps after a step
// of load (at one second into a 5s window it shows a fifth of the step),
// so a first decision on it sees part of the load and the rest waits for
// the next step. A policy therefore also looks at the recent
// Config.OutWindow (2s) and proposes the larger of the two scale-outs.
// The recent value is the lowest per-interval value of that span (see
// [Window.Recent]): a step that has lasted the span shows whole, one busy
// second does not. For rps_per_instance and inflight_per_instance the
// recent proposal is the group's total demand at the balancer divided by
// the target, over every instance in service, warmed up or not: the same
// number before and after the balancer spreads the load over new
// instances, so it is not counted twice. CPU and latency stay per
// warmed-up instance (a cold start inflates both). Scale-in reads only
// the Window and needs the whole Stabilization, so a short look that
// shows a dip never removes anything.
//
// The group scales out if any policy proposes more (to the largest
// proposal) and scales in only if every policy has data and proposes
// fewer (to the largest, that is the smallest reduction). A scale-in also
// needs every recommendation of the last Config.Stabilization (5m) to be
// below the current count, and goes to the highest of them (HPA-style). A
// step is bounded (out: max(+MaxStepUp, xMaxFactorUp); in: MaxStepDown),
// a step in one direction waits for that direction's cooldown, and the
// result is always within [Min, Max]. The scale-out cooldown ends early
// once every desired instance is in service, unless a step policy wants
// the step (see Config.CooldownOut): the next bounded step is then
// decided on a group that has the previous one serving.
//
// # States
//
//	           any policy wants more (bounded step)
//	steady ----------------------------------------> cooling_out
//	 |  ^  ^                                             |
//	 |  |  +--- CooldownOut over, or step in service ----+
//	 |  | a recommendation >= current
//	 v  |
//	stabilizing --(all lower for Stabilization)--> cooling_in --(CooldownIn over)--> steady
//
//	From cooling_in a policy that wants more scales out at once (no
//	cooldown across directions); from cooling_out a scale-in still needs
//	the whole stabilization window, which the scale-out's recommendation
//	is part of. paused: Pause() from any state; Decide reports the values
//	and what it would do, but holds. Resume() returns to the state the
//	values give. SetDesired (shoal scale N, a scheduled desired) restarts
//	the stabilization memory. Min and Max are enforced in every state.
//
// # Scheduled actions and scale-in choice
//
// A [Timetable] of cron [Schedule] entries (with a time zone) yields the
// [Action] values due in a time interval; [ChooseScaleIn] picks the
// instances to stop (oldest release first, then oldest instance, never a
// protected one).
package autoscale
