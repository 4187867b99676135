package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/rollout"
	"github.com/shoal-dev/shoal/internal/store"
)

// A rollout survives a stop or a crash of shoal.
//
// While a rollout runs, its rollout.Snapshot (its decisions, never its
// observations) is stored with the deploy's holder, author, releases and
// start time, before the rollout starts and again after every Step that
// changes it, before that Step's launches and drains are carried out. The
// record is deleted once the outcome (release statuses, the group's
// release) is stored. A graceful stop (ctrl-C) keeps it, like a crash.
//
// Policy on the next start, when a stored rollout is found: with a local
// host the instances of the previous run are gone (the runtime kills
// leftovers; observed state is never read back from disk), so nothing
// serves yet whatever the rollout had reached; with an Adopter host
// (shoal server) the instances of both releases that still run are
// adopted and observed afresh (adopt.go). The group goes where the interrupted rollout was
// going, as a Kubernetes Deployment keeps its target through a restart
// of its controller:
//
//   - going forward (surging, waiting_healthy, draining): the rollout
//     resumes towards the new release, launching it under the same
//     policy, batch timeout and crash limit; if the new release fails now,
//     it rolls back as it would have;
//   - rolling back: it finishes going back to the previous release;
//   - ended but not yet recorded (a crash between the two writes): its
//     outcome is recorded.
//
// Until the rollout ends the group's release stays the previous one
// (active) and the new one stays pending, as during an uninterrupted
// rollout; the end records active, superseded, failed or rolled_back as
// usual. The deploy lock is taken again by the same holder, so another
// deploy waits or fails with the usual message. The build is skipped:
// both releases' artifacts are kept. post_deploy hooks do not run for a
// resumed deploy (the client that asked for it is gone); an event says so.
//
// A stored rollout that cannot be resumed (unreadable, a release or its
// artifact gone) is dropped with an event, its target release is marked
// failed, and shoal starts as without it. So is a first deploy (from no
// release: `shoal server` creates an app by it): the app starts with no
// release, v1 failed, and its next deploy starts over.

// saveRollout stores d's snapshot s if it differs from the one stored
// last. It runs on the loop's goroutine, or in startRollout before the
// loop sees d.
func (c *Controller) saveRollout(d *activeDeploy, s rollout.Snapshot) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("store rollout: %w", err)
	}
	if bytes.Equal(b, d.saved) {
		return nil
	}
	err = c.o.Writer.PutRollout(store.Rollout{App: c.cfg.Name, Holder: d.holder, By: d.by,
		From: s.Spec.From, To: s.Spec.To, Started: d.started, State: b})
	if err != nil {
		return err
	}
	d.saved = b
	return nil
}

// prepareOrResume prepares the group as prepare does, or, when a rollout
// was interrupted by a stop or a crash, restores it as the active rollout
// (see the policy above). Any other release still pending then belongs to
// a deploy that was abandoned: it is marked failed. It runs once, in Run,
// before the loop starts.
func (c *Controller) prepareOrResume(ctx context.Context) error {
	rec, found, err := c.o.Store.GetRollout(c.cfg.Name)
	keep := 0
	switch {
	case err != nil:
		c.dropRollout(rec, err)
		err = c.prepare(ctx)
	case !found:
		err = c.prepare(ctx)
	default:
		if rerr := c.resumeRollout(rec); rerr != nil {
			c.dropRollout(rec, rerr)
			err = c.prepare(ctx)
		} else {
			keep = rec.To
		}
	}
	if err != nil {
		return err
	}
	c.abandonPending(keep)
	return nil
}

// dropRollout forgets a stored rollout that cannot be resumed.
func (c *Controller) dropRollout(rec store.Rollout, why error) {
	app := c.cfg.Name
	reason := fmt.Sprintf("dropped the deploy interrupted by a restart: %v", why)
	if rec.To > 0 {
		reason = fmt.Sprintf("dropped the deploy of v%d interrupted by a restart: %v", rec.To, why)
		if r, err := c.o.Store.GetRelease(app, rec.To); err == nil && r.Status == api.ReleasePending {
			if err := c.events.apply(fmt.Sprintf("release v%d failed", rec.To), func() error {
				return c.o.Writer.SetReleaseStatus(app, rec.To, api.ReleaseFailed)
			}); err != nil {
				c.log.Error("mark dropped release failed", "release", rec.To, "error", err)
			}
		}
	}
	c.events.add(api.Event{Type: "deploy", Release: rec.To, Reason: reason})
	c.log.Warn("stored rollout dropped", "release", rec.To, "error", why)
	if err := c.o.Writer.DeleteRollout(app); err != nil {
		c.log.Error("delete stored rollout", "error", err)
	}
}

// resumeRollout makes the stored rollout rec the active one, with the
// group on its From release and nothing running yet.
func (c *Controller) resumeRollout(rec store.Rollout) error {
	app := c.cfg.Name
	var snap rollout.Snapshot
	if err := json.Unmarshal(rec.State, &snap); err != nil {
		return fmt.Errorf("read rollout state: %w", err)
	}
	r, err := rollout.Restore(snap)
	if err != nil {
		return err
	}
	spec := r.Spec()
	if spec.From < 1 {
		// A first deploy: no release served before it, so there is no
		// group to resume and nothing to roll back to.
		return fmt.Errorf("the first deploy (v%d) is not resumed", spec.To)
	}
	if spec.From != rec.From || spec.To != rec.To {
		return fmt.Errorf("rollout v%d -> v%d recorded as v%d -> v%d", spec.From, spec.To, rec.From, rec.To)
	}
	from, err := c.resumableRelease(spec.From)
	if err != nil {
		return err
	}
	to, err := c.resumableRelease(spec.To)
	if err != nil {
		return err
	}
	group, found, err := c.o.Store.GetGroup(app)
	if err != nil {
		return err
	}
	if !found {
		return errors.New("the group is not stored")
	}
	if err := c.dep.lock.TryAcquire(app, rollout.Holder{ID: rec.Holder, Release: spec.To, By: rec.By}); err != nil {
		return err
	}
	group.Min, group.Max = c.cfg.Group.Min, c.cfg.Group.Max
	group.Desired = min(max(group.Desired, group.Min), group.Max)
	group.Release = from.Version
	if err := c.o.Writer.PutGroup(group); err != nil {
		c.dep.lock.Release(app, rec.Holder)
		return err
	}
	from.Status = api.ReleaseActive
	toEnv := envFromStore(to.Env)
	d := &activeDeploy{holder: rec.Holder, by: rec.By, started: rec.Started, r: r, env: toEnv,
		done: make(chan struct{}), launched: map[string]*instance{},
		rels: map[int]api.Release{from.Version: from, to.Version: to}, saved: compactJSON(rec.State)}

	what := fmt.Sprintf("resuming deploy of v%d interrupted by a restart (%s)", spec.To, snap.Phase)
	switch {
	case snap.Phase.Terminal():
		what = fmt.Sprintf("recording the end of the deploy of v%d interrupted by a restart (%s)", spec.To, snap.Phase)
	case snap.Back:
		what = fmt.Sprintf("finishing the rollback to v%d of the deploy of v%d interrupted by a restart", spec.From, spec.To)
	case spec.To < spec.From:
		what = fmt.Sprintf("resuming rollback from v%d to v%d interrupted by a restart", spec.From, spec.To)
	}
	if !snap.Phase.Terminal() {
		what += "; its post_deploy hooks will not run"
	}
	c.mu.Lock()
	c.group, c.current = group, from
	c.env = mergeEnv(envFromStore(from.Env), secretsOf(toEnv))
	c.dep.active = d
	c.events.add(api.Event{Type: "deploy", Release: spec.To, Reason: c.env.Redact(what)})
	c.mu.Unlock()
	c.log.Info("rollout resumed", "release", spec.To, "from", spec.From, "phase", snap.Phase.String(), "by", rec.By)
	return nil
}

// resumableRelease returns release v if it and its artifact are kept.
func (c *Controller) resumableRelease(v int) (api.Release, error) {
	r, err := c.o.Store.GetRelease(c.cfg.Name, v)
	if err != nil {
		return api.Release{}, fmt.Errorf("release v%d: %w", v, err)
	}
	if !c.o.Artifacts.Has(r.Digest) {
		return api.Release{}, fmt.Errorf("release v%d: artifact %s is gone", v, short(r.Digest))
	}
	return r, nil
}

// compactJSON returns b compacted, as json.Marshal writes it, so that the
// first Step after a resume does not rewrite an unchanged snapshot.
func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil
	}
	return out.Bytes()
}
