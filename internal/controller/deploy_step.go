package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/reconcile"
	"github.com/shoal-dev/shoal/internal/rollout"
)

// rolloutTick is how often a running rollout is stepped without a change
// of any instance, so that its batch deadlines are checked.
const rolloutTick = 250 * time.Millisecond

// startRollout makes d the active rollout from from to to and wakes the
// loop, which steps it from then on instead of reconciling (scaling is
// held: the rollout's desired count is fixed at its start). The deploy
// lock identified by holder passes to the rollout; finishRollout frees it.
// The rollout is stored before it starts, so that a crash from then on
// resumes it (deploy_persist.go).
func (c *Controller) startRollout(holder, by string, from, to api.Release, env config.Env, policy rollout.Policy) (*activeDeploy, error) {
	c.mu.Lock()
	now, desired := c.now(), c.group.Desired
	c.mu.Unlock()
	r, err := rollout.New(now, rollout.Spec{Group: c.cfg.Name, From: from.Version, To: to.Version,
		Desired: desired, Policy: policy})
	if err != nil {
		return nil, fmt.Errorf("start rollout: %w", err)
	}
	d := &activeDeploy{holder: holder, by: by, started: now, r: r, env: env, done: make(chan struct{}),
		launched: map[string]*instance{}, rels: map[int]api.Release{from.Version: from, to.Version: to}}
	// Only the holder of the deploy lock gets here: nothing else stores a
	// rollout of this group meanwhile. The records of the rollouts before
	// it must be stored first (events.go: apply), or a late one would
	// overwrite what this one records.
	if err := c.events.sync(); err != nil {
		return nil, fmt.Errorf("start rollout: the outcome of earlier changes cannot be stored yet: %w", err)
	}
	if err := c.saveRollout(d, r.Snapshot()); err != nil {
		return nil, fmt.Errorf("start rollout: %w", err)
	}
	c.mu.Lock()
	c.dep.active = d
	// Redact the new release's secrets too while both run.
	c.env = mergeEnv(c.env, secretsOf(env))
	c.mu.Unlock()
	c.log.Info("rollout started", "release", to.Version, "from", from.Version, "desired", desired)
	c.poke()
	return d, nil
}

// runConfigLocked returns the command and environment instances of
// release v run: the rollout's releases while one runs, else the
// current release.
func (c *Controller) runConfigLocked(v int) (string, []string) {
	if d := c.dep.active; d != nil {
		if r, ok := d.rels[v]; ok {
			return r.Command, envFromStore(r.Env).Environ()
		}
	}
	return c.current.Command, c.env.Environ()
}

// declaredLocked returns the CPU (cores) and memory (bytes) each instance
// of release v declares (run.cpu, run.memory), from the same release as
// runConfigLocked.
func (c *Controller) declaredLocked(v int) (float64, int64) {
	r := c.current
	if d := c.dep.active; d != nil {
		if dr, ok := d.rels[v]; ok {
			r = dr
		}
	}
	return r.CPU, r.Memory
}

// runtimeLocked returns the runtime and container port of release v, from
// the same release as runConfigLocked.
func (c *Controller) runtimeLocked(v int) (string, int) {
	r := c.current
	if d := c.dep.active; d != nil {
		if dr, ok := d.rels[v]; ok {
			r = dr
		}
	}
	return r.Runtime, r.Port
}

// stepRollout steps the active rollout, if any, in place of the
// reconciler, and carries out its launches and drains. ok is false when
// no rollout is active.
func (c *Controller) stepRollout(ctx context.Context, workers *sync.WaitGroup) (retryAt time.Time, ok bool) {
	c.mu.Lock()
	d := c.dep.active
	if d == nil {
		c.mu.Unlock()
		return time.Time{}, false
	}
	now := c.now()
	var launches, retires []*instance
	var step rollout.Step
	// Step again after launching, so that the rollout sees every instance
	// it launched at least once while it lives, even one that crashes at
	// once (it counts crashes only of instances it has seen).
	for range 4 {
		step = d.r.Step(now, c.observeRolloutLocked(d))
		for _, e := range step.Events {
			c.events.add(api.Event{Type: "deploy", Release: step.Release, Reason: c.env.Redact(e)})
			c.log.Info("rollout", "release", step.Release, "reason", c.env.Redact(e))
		}
		digest := d.rels[step.Release].Digest
		for range step.Launch {
			in := c.newInstanceLocked(ctx, reconcile.Action{Kind: reconcile.Launch, Release: step.Release,
				Reason: fmt.Sprintf("rollout to v%d", step.Release)})
			in.digest = digest
			d.launched[in.id] = in
			launches = append(launches, in)
		}
		for _, id := range step.Drain {
			in := c.instances[id]
			if in == nil || in.state == api.Draining {
				continue
			}
			c.setStateLocked(in, api.Draining, fmt.Sprintf("rollout to v%d: %s", step.Release, step.Reason))
			in.cancel() // ends the monitor, or makes a launch stop what it started
			if in.inPool {
				retires = append(retires, in)
			}
		}
		if step.Launch == 0 || step.Phase.Terminal() {
			break
		}
	}
	snap := d.r.Snapshot()
	c.mu.Unlock()

	// The decisions are stored before they are carried out.
	if err := c.saveRollout(d, snap); err != nil {
		c.log.Error("store rollout", "release", d.r.Spec().To, "error", err)
	}

	for _, in := range launches {
		workers.Add(1)
		go func() {
			defer workers.Done()
			c.launch(ctx, in)
		}()
	}
	for _, in := range retires {
		workers.Add(1)
		go func() {
			defer workers.Done()
			c.retire(in, fmt.Sprintf("replaced by v%d", step.Release))
		}()
	}
	if step.Phase.Terminal() {
		c.finishRollout(d, step.Phase)
		c.poke() // the reconciler takes over
		return time.Time{}, true
	}
	return now.Add(rolloutTick), true
}

// observeRolloutLocked lists the group's instances for the rollout. An
// instance the rollout launched that has ended since the last step is
// reported once more, in its end state and with its end reason (an exit
// status, a failed health check), so the rollout counts it with its cause.
func (c *Controller) observeRolloutLocked(d *activeDeploy) []rollout.Instance {
	obs := make([]rollout.Instance, 0, len(c.instances))
	add := func(in *instance) {
		reason := in.reason
		if in.state == api.Starting && in.health != "" {
			reason = "last check: " + in.health
		}
		obs = append(obs, rollout.Instance{ID: in.id, Release: in.release, State: in.state, Since: in.since, Reason: reason})
	}
	for _, in := range c.instances {
		add(in)
	}
	for id, in := range d.launched {
		if c.instances[id] != in {
			add(in)
			delete(d.launched, id)
		}
	}
	return obs
}

// finishRollout records the outcome of d (release statuses, the group's
// release), hands the group back to the reconciler and frees the deploy
// lock. It runs on the loop's goroutine.
func (c *Controller) finishRollout(d *activeDeploy, phase rollout.Phase) {
	app := c.cfg.Name
	c.mu.Lock()
	spec := d.r.Spec()
	final := d.r.Progress(c.now())
	c.mu.Unlock()
	from, to := d.rels[spec.From], d.rels[spec.To]

	// Both writes go through the event log (events.go: apply): one the
	// store refuses (a full disk) is kept, named in Status, and retried in
	// order until it is stored; meanwhile the group runs as decided here.
	outcome := func() error { return c.recordTurnedBack(to.Version) } // aborted, rolled back, or the rollback failed too
	if phase == rollout.PhaseDone {
		prev := api.ReleaseSuperseded
		if to.Version < from.Version {
			prev = api.ReleaseRolledBack // shoal rollback
		}
		outcome = func() error { return c.o.Writer.Activate(app, to.Version, prev) }
	}
	if err := c.events.apply(fmt.Sprintf("the outcome of the rollout to v%d (%s)", to.Version, phase), outcome); err != nil {
		c.log.Error("record rollout outcome", "release", to.Version, "error", err)
	}
	if err := c.events.apply(fmt.Sprintf("the end of the rollout to v%d", to.Version), func() error {
		return c.deleteRollout(d.holder)
	}); err != nil {
		// Harmless meanwhile: a start before it is stored finds the ended
		// rollout and records its outcome again.
		c.log.Error("delete stored rollout", "release", to.Version, "error", err)
	}

	c.mu.Lock()
	if phase == rollout.PhaseDone {
		to.Status = api.ReleaseActive
		c.current = to
		c.group.Release = to.Version
		c.env = envFromStore(to.Env)
	} else {
		c.env = envFromStore(from.Env)
	}
	c.dep.active = nil
	d.final = final
	// The balancer's asset cache holds answers of the old release (or,
	// after a rollout that went back, of the new one's instances while
	// they served): from here the pool serves one release again.
	c.o.Pool.NewRelease()
	c.events.add(api.Event{Type: "deploy", Release: to.Version, Reason: c.env.Redact(fmt.Sprintf("rollout v%d -> v%d ended %s after %s: %s",
		from.Version, to.Version, phase, final.Elapsed.Round(time.Millisecond), final.Reason))})
	c.mu.Unlock()
	c.log.Info("rollout ended", "release", to.Version, "phase", phase.String(), "reason", final.Reason)
	c.dep.lock.Release(app, d.holder)
	close(d.done)
}

// deleteRollout deletes the stored rollout if holder's deploy stored it:
// a later rollout's record is left alone.
func (c *Controller) deleteRollout(holder string) error {
	rec, found, err := c.o.Store.GetRollout(c.cfg.Name)
	if err != nil || !found || rec.Holder != holder {
		return err
	}
	return c.o.Writer.DeleteRollout(c.cfg.Name)
}

// recordTurnedBack records the status of release v after a rollout to it
// went back: failed if no instance of it ever served (it is then never a
// default rollback target), rolled_back if it served in part during this
// rollout; a release that had served before (the target of a rollback)
// keeps its status. The stored record is read, not the rollout's copy:
// Served may have been set during the rollout (markServed).
func (c *Controller) recordTurnedBack(v int) error {
	r, err := c.o.Store.GetRelease(c.cfg.Name, v)
	if err != nil {
		return err
	}
	switch {
	case !r.HasServed():
		return c.o.Writer.SetReleaseStatus(c.cfg.Name, v, api.ReleaseFailed)
	case r.Status == api.ReleasePending:
		return c.o.Writer.SetReleaseStatus(c.cfg.Name, v, api.ReleaseRolledBack)
	}
	return nil
}

// envFromStore converts a stored environment.
func envFromStore(vs []api.EnvVar) config.Env {
	out := make(config.Env, len(vs))
	for i, v := range vs {
		out[i] = config.EnvVar{Name: v.Name, Value: v.Value, Secret: v.Secret}
	}
	return out
}

// secretsOf returns the secret variables of env.
func secretsOf(env config.Env) config.Env {
	var out config.Env
	for _, v := range env {
		if v.Secret {
			out = append(out, v)
		}
	}
	return out
}

// mergeEnv returns base with the variables of over set (added or
// replaced), sorted by name.
func mergeEnv(base, over config.Env) config.Env {
	out := slices.Clone(base)
	for _, v := range over {
		i := slices.IndexFunc(out, func(e config.EnvVar) bool { return e.Name == v.Name })
		if i >= 0 {
			out[i] = v
		} else {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b config.EnvVar) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// stopRollout ends the active rollout, if any, when the controller stops:
// its waiters learn that it did not finish and the lock is freed. The
// instances are then drained and stopped with the rest. The stored
// rollout is kept: the next start resumes it (deploy_persist.go), as
// after a crash.
func (c *Controller) stopRollout() {
	c.mu.Lock()
	d := c.dep.active
	if d == nil {
		c.mu.Unlock()
		return
	}
	c.dep.active = nil
	d.final = d.r.Progress(c.now())
	if d.r.Spec().From < 1 {
		// A first deploy has nothing to go back to: see resumeRollout.
		d.final.Reason = fmt.Sprintf("shoal stopped during the first deploy; at its next start v%d is marked failed and the next deploy starts over: %s", d.r.Spec().To, d.final.Reason)
	} else {
		d.final.Reason = "shoal stopped during the rollout; it resumes when shoal starts again: " + d.final.Reason
	}
	c.events.add(api.Event{Type: "deploy", Release: d.r.Spec().To, Reason: d.final.Reason})
	c.mu.Unlock()
	c.dep.lock.Release(c.cfg.Name, d.holder)
	close(d.done)
}
