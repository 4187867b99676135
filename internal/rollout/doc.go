// Package rollout owns the decisions of a rolling deploy: which instances
// of a group to launch and which to drain, batch by batch, to move it from
// one release to another without taking serving capacity away, and when
// to give up and go back. It also owns the deploy lock's semantics. It is
// pure: no goroutines, no clock (every call takes the time), no I/O, and
// no imports of other Shoal packages. The controller is the actuator: it
// observes the group, calls [Rollout.Step], launches and drains what the
// Step says, records the Step's events, and persists [Rollout.Snapshot].
//
// # Capacity rules
//
// With D desired instances, MaxSurge S and MaxUnavailable U (see [Policy]):
//
//   - at most D+S instances run at any time, draining ones included (a
//     draining instance still holds memory and a port on its host; the
//     price is that a long drain delays the next batch);
//   - the rollout never drains an instance in service if that leaves
//     fewer than D-U in service. With the default U = 0, an old instance
//     is drained only once a new one in service replaces it (launch before
//     terminate), so even a group of one never goes without a server.
//
// Instances that stop serving on their own (crash, failed checks) lower
// capacity whatever the rollout does; it then drains nothing more until
// new instances make up for them.
//
// # Failure
//
// Each instance of the release being rolled to must come into service
// within Policy.BatchTimeout of its launch (or of turning unhealthy); at
// Policy.MaxFailures crashes of that release (crash loop) or at the first
// overdue instance, the rollout turns back. Going back is the same
// rollout towards the previous release: new instances that do not serve
// are drained at once, any old capacity already drained is launched again
// first, and new instances in service keep serving until old ones replace
// them. [Rollout.Abort] turns back the same way.
//
// # States
//
//	         launch (room under D+S)         a new instance serves
//	surging ------------------------> waiting_healthy -----------> draining
//	   ^                                                              |
//	   +------------- old instance stopped, more to replace ----------+
//	                                                                  |
//	                       D new in service, nothing else running     v
//	                                                                done
//
//	surging | waiting_healthy | draining
//	   --(batch deadline, crash loop, Fail)--> rolling_back --(D old in service)--> rolled_back
//	   --(Abort)-----------------------------> rolling_back --(D old in service)--> aborted
//	rolling_back --(deadline or crash loop of the old release)--> failed
//
// done, rolled_back, aborted and failed are terminal. In failed the
// rollout acts no more and leaves the group as it is for the operator
// (the controller's reconciler keeps it at its desired count).
//
// # Deploy lock and persistence
//
// [Lock] lets one rollout run per group; a second deploy waits
// ([Lock.Acquire]) or fails with a [LockedError] that says who deploys
// what since when. The lock is in memory: the controller must store the
// active rollout's [Snapshot] durably whenever a Step changes it, and on
// restart [Restore] it, take the lock again and keep stepping with fresh
// observations, so that a crashed controller resumes the rollout or
// finishes rolling back instead of leaving a half-deployed group.
package rollout
