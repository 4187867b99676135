package pool

// NewRelease tells the pool that its targets now serve a new release (the
// controller calls it when it activates one, or when a rollout returns to
// the previous release): whatever was cached of the targets' answers
// (the balancer's asset cache) is stale from now on. Safe for concurrent
// use.
func (p *Pool) NewRelease() { p.release.Add(1) }

// ReleaseGeneration counts the NewRelease calls: a cache keeps an answer
// only while the generation it was stored under is current. Safe for
// concurrent use; it allocates nothing.
func (p *Pool) ReleaseGeneration() uint64 { return p.release.Load() }
