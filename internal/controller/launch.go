package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/rollout"
	"github.com/shoal-dev/shoal/internal/store"
)

// Probe cadence while an instance starts: the first probe goes out as soon
// as the process runs, then the gap grows by half each time up to
// startProbeMax (or the configured interval, if smaller). A fast app is
// thus in service a few milliseconds after its port opens, and a slow one
// costs a handful of refused connections per second.
const (
	startProbeFirst = 5 * time.Millisecond
	startProbeMax   = 250 * time.Millisecond
)

// launch starts in on the host, waits until it is healthy, puts it in
// the pool, then monitors its health until its context ends. It runs in a
// goroutine owned by Run.
func (c *Controller) launch(ctx context.Context, in *instance) {
	c.mu.Lock()
	ictx := in.ctx
	command, environ := c.runConfigLocked(in.release)
	cpu, memory := c.declaredLocked(in.release)
	rt, port := c.runtimeLocked(in.release)
	spec := LaunchSpec{
		ID:          in.id,
		App:         c.cfg.Name,
		Release:     in.release,
		Digest:      in.digest,
		Command:     command,
		Env:         environ,
		Secrets:     c.launchSecretsLocked(in.release),
		StopSignal:  c.cfg.Run.Signal(),
		StopTimeout: c.cfg.Run.StopTimeout.D(),
		CPU:         cpu,
		Memory:      memory,
		Runtime:     rt,
		Port:        port,
	}
	c.mu.Unlock()

	run, err := c.startPlaced(ictx, in, spec)
	c.mu.Lock()
	if err != nil {
		canceled := ictx.Err() != nil
		if canceled {
			c.endLocked(in, api.Stopped, "stopped before it started")
		} else {
			c.endLocked(in, api.Failed, "start: "+err.Error())
		}
		c.mu.Unlock()
		if !canceled {
			c.cannotStart(in, err)
		}
		c.failOn(err, spec.Release) // fatal.go
		c.poke()
		return
	}
	in.addr, in.pid, in.started, in.host, in.zone = run.Addr, run.PID, run.Started, run.Host, run.Zone
	stopping := in.state == api.Draining
	if !stopping && in.exit == nil {
		c.setStateLocked(in, api.Starting, fmt.Sprintf("process %d started, serving on %s", run.PID, run.Addr))
	}
	c.mu.Unlock()
	if stopping {
		c.stopNow(in, "stopped before it became healthy")
		return
	}
	c.admit(in)
}

// admit waits until in, whose process runs, is healthy, puts it in the
// pool, then monitors its health until its context ends; one that never
// becomes healthy is stopped and fails. It runs in a goroutine owned by
// Run, for a launched instance and for an adopted one (adopt.go).
func (c *Controller) admit(in *instance) {
	c.mu.Lock()
	ictx, adopted := in.ctx, in.adopted
	c.mu.Unlock()
	ok, detail := c.waitHealthy(ictx, in)
	if ok && !adopted {
		// Stored before the instance is seen in service, so that whatever
		// follows from that (a rollout's end) finds the release served.
		// An adopted instance is no start: its release served before.
		c.markServed(in.release)
	}
	c.mu.Lock()
	switch {
	case in.exit != nil || c.instances[in.id] != in:
		// The exit watcher has recorded the end already.
		c.mu.Unlock()
		return
	case in.state == api.Draining:
		// Stopped by a scale-down while starting.
		c.mu.Unlock()
		c.stopNow(in, "stopped before it became healthy")
		return
	case ictx.Err() != nil:
		// Shutdown: Run's shutdown stops what is left.
		c.mu.Unlock()
		return
	case !ok:
		c.setStateLocked(in, api.Draining, "never became healthy: "+detail)
		c.mu.Unlock()
		c.stopThenEnd(in, api.Failed, "never became healthy: "+detail)
		return
	}
	err := c.o.Pool.Add(pool.TargetSpec{Addr: in.addr})
	if err != nil && !errors.Is(err, pool.ErrExists) {
		c.setStateLocked(in, api.Draining, "cannot join the pool: "+err.Error())
		c.mu.Unlock()
		c.stopThenEnd(in, api.Failed, "cannot join the pool: "+err.Error())
		return
	}
	in.inPool = true
	in.healthy, in.health = true, detail
	reason := fmt.Sprintf("healthy after %s (%s)", c.now().Sub(in.started).Round(time.Millisecond), detail)
	if adopted {
		reason = fmt.Sprintf("adopted and healthy after %s of checks (%s)", c.now().Sub(in.since).Round(time.Millisecond), detail)
	}
	c.setStateLocked(in, api.InService, reason)
	c.checkReadyLocked()
	c.mu.Unlock()
	c.poke()

	c.monitor(ictx, in)
}

// Waits between starts of an instance that no host could take: the
// fleet's hosts may join, come back or free capacity at any time.
const (
	noCapacityFirst = 250 * time.Millisecond
	noCapacityMax   = 5 * time.Second
)

// startPlaced starts in on the host. While the host has no capacity for it
// (ErrNoCapacity) the instance stays pending with the host's reason ("no
// capacity: ..."), recorded as an event each time it changes, and the
// start is tried again after a wait that doubles up to noCapacityMax,
// until ctx ends (the instance is stopped or Run ends); the last error is
// then returned.
func (c *Controller) startPlaced(ctx context.Context, in *instance, spec LaunchSpec) (Running, error) {
	wait := noCapacityFirst
	for {
		run, err := c.o.Host.Start(ctx, spec)
		if !errors.Is(err, ErrNoCapacity) || ctx.Err() != nil {
			return run, err
		}
		c.mu.Lock()
		reason := c.env.Redact(err.Error())
		if in.state == api.Pending && in.reason != reason {
			in.reason = reason
			c.events.add(api.Event{Type: "state", Instance: in.id, Release: in.release, From: api.Pending.String(),
				State: api.Pending.String(), Reason: reason})
			c.log.Warn("instance pending", "instance", in.id, "release", in.release, "reason", reason)
		}
		c.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Running{}, err
		case <-t.C:
		}
		wait = min(2*wait, noCapacityMax)
	}
}

// markServed records, once per release and run, that an instance of
// release v is healthy and joins the pool (api.Release.Served). A caller
// that comes while the record is being written waits for that write
// instead of making its own: a release's instances turn healthy together,
// and one write each, serialised (through the Raft log, tens of
// milliseconds each), held each of them out of service behind the
// others' (10,000 instances: a bring-up of minutes, bench/scale).
func (c *Controller) markServed(v int) {
	c.mu.Lock()
	if c.served[v] {
		c.mu.Unlock()
		return
	}
	if wait, ok := c.marking[v]; ok {
		c.mu.Unlock()
		<-wait
		return
	}
	written := make(chan struct{})
	c.marking[v] = written
	c.mu.Unlock()
	defer close(written)
	now := c.now()
	// Through the event log (events.go: apply): the outcome of a rollout
	// reads it, and is stored after it.
	if err := c.events.apply(fmt.Sprintf("release v%d served", v), func() error {
		err := c.o.Writer.MarkServed(c.cfg.Name, v, now)
		if errors.Is(err, store.ErrNotFound) {
			return nil // pruned
		}
		return err
	}); err != nil {
		c.log.Warn("record release served", "release", v, "error", err)
	}
	c.mu.Lock()
	c.served[v] = true
	delete(c.marking, v)
	if c.current.Version == v && c.current.Served.IsZero() {
		c.current.Served = now
	}
	c.mu.Unlock()
}

// cannotStart handles a launch of in that the host could not start (the
// artifact cannot be unpacked, the process cannot be spawned). Such a
// release does not get better by retrying: a rollout launching it turns
// back (or, going back already, fails) at once instead of after its crash
// limit; and, once per release and run, an event gives the reason and the
// release is marked failed, unless it is the group's current release and
// has served, which keeps its status (the reconciler backs off).
func (c *Controller) cannotStart(in *instance, err error) {
	v := in.release
	c.mu.Lock()
	reason := c.env.Redact(fmt.Sprintf("release v%d cannot start: %v", v, err))
	if d := c.dep.active; d != nil {
		if spec := d.r.Spec(); v == spec.To || v == spec.From {
			// ErrFinished (already ended) needs nothing more.
			_ = d.r.Fail(c.now(), rollout.Failure{InstanceID: in.id, Release: v, Reason: reason})
		}
	}
	if c.noStart[v] {
		c.mu.Unlock()
		return
	}
	c.noStart[v] = true
	keep := c.current.Version == v && (c.served[v] || c.current.HasServed())
	c.events.add(api.Event{Type: "release", Release: v, Instance: in.id, Reason: reason})
	c.mu.Unlock()
	c.log.Error("release cannot start", "release", v, "instance", in.id, "error", reason)
	if keep {
		return
	}
	if err := c.events.apply(fmt.Sprintf("release v%d failed", v), func() error {
		return c.o.Writer.SetReleaseStatus(c.cfg.Name, v, api.ReleaseFailed)
	}); err != nil {
		c.log.Error("mark release failed", "release", v, "error", err)
	}
}

// waitHealthy probes a starting instance until it passes the healthy
// threshold in a row (true), or its grace ends without that (false), or
// ctx ends or the process exits (false). detail describes the last probe.
func (c *Controller) waitHealthy(ctx context.Context, in *instance) (bool, string) {
	h := c.cfg.Health
	grace := h.Grace.D()
	if grace <= 0 {
		grace = time.Duration(max(h.UnhealthyThreshold, 1)) * h.Interval.D()
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	gap := startProbeFirst
	maxGap := min(startProbeMax, max(h.Interval.D(), startProbeFirst))
	passes, detail := 0, "no check yet"
	need := max(h.HealthyThreshold, 1)
	for {
		ok, d := c.prober.Probe(ctx, in.addr)
		detail = d
		if ok {
			passes++
			if passes >= need {
				return true, detail
			}
		} else {
			passes = 0
		}
		wait := time.NewTimer(gap)
		select {
		case <-ctx.Done():
			wait.Stop()
			return false, "canceled"
		case <-in.exited:
			wait.Stop()
			return false, "exited"
		case <-deadline.C:
			wait.Stop()
			return false, fmt.Sprintf("grace %s ended; last check: %s", grace, detail)
		case <-wait.C:
		}
		gap = min(gap*3/2+time.Millisecond, maxGap)
	}
}

// monitor checks an instance in service at the configured interval and
// moves it between in_service and unhealthy after the thresholds. It
// returns when ctx ends (retire, shutdown or exit).
func (c *Controller) monitor(ctx context.Context, in *instance) {
	h := c.cfg.Health
	tick := time.NewTicker(h.Interval.D())
	defer tick.Stop()
	fails, passes := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.exited:
			return
		case <-tick.C:
		}
		started := c.now()
		ok, detail := c.prober.Probe(ctx, in.addr)
		if ctx.Err() != nil {
			return
		}
		if ok {
			passes, fails = passes+1, 0
		} else {
			fails, passes = fails+1, 0
		}
		c.mu.Lock()
		in.healthy, in.health = ok, detail
		switch {
		case in.state == api.InService && fails >= max(h.UnhealthyThreshold, 1):
			reason := fmt.Sprintf("failed %d health checks in a row: %s", fails, detail)
			c.setStateLocked(in, api.Unhealthy, reason)
			c.o.Pool.SetHealth(in.addr, false, reason)
			c.mu.Unlock()
			c.poke()
			continue
		case in.state == api.Unhealthy && passes >= max(h.HealthyThreshold, 1):
			reason := fmt.Sprintf("passed %d health checks in a row", passes)
			c.setStateLocked(in, api.InService, reason)
			c.o.Pool.SetHealth(in.addr, true, reason)
			c.mu.Unlock()
			c.poke()
			continue
		}
		serving := ok && in.state == api.InService && in.inPool
		c.mu.Unlock()
		if serving {
			// A passing check ends a passive ejection that began before it
			// started, as in `shoal lb`: the instance answers again, so it
			// does not sit out the rest of its ejection.
			if err := c.o.Pool.ProbePassed(in.addr, started); err != nil && !errors.Is(err, pool.ErrNotFound) {
				c.log.Warn("end ejection", "instance", in.id, "error", err)
			}
		}
	}
}

// stopNow stops an instance that is not in the pool and forgets it.
func (c *Controller) stopNow(in *instance, reason string) {
	c.stopThenEnd(in, api.Stopped, reason)
}

// stopThenEnd stops in on its host, then records its end state.
func (c *Controller) stopThenEnd(in *instance, st api.State, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Run.StopTimeout.D()+10*time.Second)
	defer cancel()
	if err := c.o.Host.Stop(ctx, in.id); err != nil {
		c.log.Warn("stop instance", "instance", in.id, "error", err)
	}
	c.mu.Lock()
	if c.instances[in.id] == in {
		c.endLocked(in, st, reason)
	}
	c.mu.Unlock()
	c.poke()
}

// retire takes an instance out of the pool, waits for its requests in
// flight (bounded by the drain timeout), and stops it.
func (c *Controller) retire(in *instance, reason string) {
	c.mu.Lock()
	addr, inPool := in.addr, in.inPool
	c.mu.Unlock()
	if inPool {
		c.drain(addr)
		c.mu.Lock()
		in.inPool = false
		c.mu.Unlock()
	}
	c.stopThenEnd(in, api.Stopped, reason)
}

// drain takes addr out of rotation, waits until it is idle in the pool
// and, through Options.AwaitDrain, in the other balancers, or until the
// drain timeout has passed (plus a second for streams to end), and
// removes it.
func (c *Controller) drain(addr string) {
	to := c.cfg.Balancer.DrainTimeout.D()
	idle, err := c.o.Pool.Drain(addr, to)
	if err != nil {
		return // not in the pool
	}
	ctx, cancel := context.WithTimeout(context.Background(), to+time.Second)
	defer cancel()
	select {
	case <-idle:
	case <-ctx.Done():
		c.log.Warn("drain did not finish", "target", addr)
	}
	if c.o.AwaitDrain != nil {
		if err := c.o.AwaitDrain(ctx, addr); err != nil {
			c.log.Warn("drain did not finish on every balancer", "target", addr, "error", err)
		}
	}
	if done, err := c.o.Pool.Remove(addr); err == nil {
		select {
		case <-done:
		default:
		}
	}
}
