package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Following a deploy whose stream broke. In a cluster of servers the
// deploy runs on the leader; when the leader dies, the follower that
// forwarded the deploy loses the leader's answer mid-stream, while a new
// leader resumes the rollout from its stored state (or, if the release
// was never committed, nothing was deployed). Deploy then reads that
// state until the deploy has an outcome, as `shoal status` would:
//
//	stream broke --> GET /v1/deploy: a rollout to our release runs? --yes--> print its progress, poll again
//	                     | no
//	                     v
//	                 GET /v1/releases: our release (the rollout's target seen in the stream, else
//	                 the newest above the one before the deploy, of the deploy's artifact)
//	                   active/superseded: it serves (ok)     failed/rolled_back: it failed
//	                   pending (or, for a rollback, superseded): the new leader resumes it, poll again
//	                   none, for followNoRelease: nothing was deployed (the leader died before
//	                   committing it)
//
// Errors reading that state (no leader yet) are retried for
// followErrorsFor; after that the outcome is unknown, and the error says
// so and how to follow the deploy. When nothing answers at the server's
// address at all (the server itself died, as a killed `shoal up`), or
// the caller's context ends (before or while following), the outcome is
// unknown at once.

// OutcomeUnknownError is a deploy (or env change, or rollback) whose
// stream broke and whose outcome could not be learnt after: it may have
// been applied, may still be, or may not. Why may be any error, an
// *UnreachableError or an *APIError among them: it says why following
// the deploy failed, not that the deploy was refused, so a caller that
// sorts failures by cause checks for this type first.
type OutcomeUnknownError struct {
	Broke error // how the deploy's answer was lost
	Why   error // why its outcome could not be learnt after
}

// Error says that the outcome is unknown, why, and how to follow it.
func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("admin api: %v; the deploy's outcome is unknown (%v): it may go on; follow it with shoal status and shoal events", e.Broke, e.Why)
}

func (e *OutcomeUnknownError) Unwrap() []error { return []error{e.Broke, e.Why} }

// followEvery is how often a broken deploy's state is read.
const followEvery = time.Second

// followErrorsFor bounds how long reading a broken deploy's state may
// fail in a row before its outcome is reported unknown.
const followErrorsFor = 90 * time.Second

// followNoRelease is how long no release of the deploy, and no rollout,
// must be seen before the deploy is reported as never made; and how long
// its release may stay pending with no rollout before the outcome is
// reported unknown.
const followNoRelease = 15 * time.Second

// deployWatch is what identifies a deploy's release once its stream broke.
type deployWatch struct {
	// before is the newest release before the deploy; -1 when unknown.
	before int
	// target is the release the deploy's rollout goes to, from its
	// progress lines; 0 until one came.
	target int
	// digest is the deployed artifact's; empty for a rollback, an env
	// change or a config-only deploy.
	digest string
	// rollback: the deploy makes no release, it goes back to target
	// (0 until known: "the previous release").
	rollback bool
	// env, for an env change: the names it sets and unsets. Its release
	// serving does not prove the change stayed stored: the leader that
	// lost the caller puts the overrides back when the deploy's call ends
	// before its release serves, while the rollout may go on.
	env *envChange
}

// envChange is what an env change sets and unsets, by name.
type envChange struct {
	set, unset []string
}

// newestRelease returns the newest release's version (0: none, or no
// such app yet), or -1 when the releases cannot be read.
func (c *Client) newestRelease(ctx context.Context) int {
	rels, err := c.Releases(ctx)
	if IsStatus(err, http.StatusNotFound) {
		return 0
	}
	if err != nil {
		return -1
	}
	newest := 0
	for _, r := range rels {
		newest = max(newest, r.Version)
	}
	return newest
}

// followDeploy follows the deploy w describes, whose stream broke
// (broke says how), to its outcome; see the top of this file. Lines it
// has to tell go to fn, as the stream's did.
func (c *Client) followDeploy(ctx context.Context, w deployWatch, broke error, fn func(DeployLine)) (*DeployResult, error) {
	unknown := func(why error) error { return &OutcomeUnknownError{Broke: broke, Why: why} }
	if ctx.Err() != nil {
		// The caller stopped waiting: the deploy may go on all the same.
		return nil, unknown(fmt.Errorf("the call ended before the deploy could be followed: %w", context.Cause(ctx)))
	}
	switch {
	case w.target == 0 && w.rollback:
		return nil, unknown(errors.New("the release it goes back to is not known yet"))
	case w.target == 0 && w.before < 0:
		return nil, unknown(errors.New("the releases before it could not be read, so its release is not known"))
	}
	fn(DeployLine{Log: fmt.Sprintf("lost the deploy's stream (%v): following the deploy on the cluster's leader", broke)})
	var failing, missing, stalled time.Time
	t := time.NewTicker(followEvery)
	defer t.Stop()
	for {
		st, err := c.deployState(ctx, &w, fn)
		now := time.Now()
		var gone *UnreachableError
		switch {
		case errors.As(err, &gone):
			// Nothing answers at the server's address: the server itself
			// is down (a single server, or the one this client talks to),
			// not a leader behind a follower that still answers.
			return nil, unknown(err)
		case err != nil:
			if failing.IsZero() {
				failing = now
			}
			if now.Sub(failing) > followErrorsFor {
				return nil, unknown(err)
			}
		case st.result != nil:
			if st.result.Error == "" && w.env != nil {
				if err := c.envStored(ctx, w.env); err != nil {
					return &DeployResult{Version: st.result.Version, Error: fmt.Sprintf("%v; v%d serves, but %v: run the env change again", broke, st.result.Version, err)}, nil
				}
			}
			return st.result, nil
		case st.release == nil:
			failing = time.Time{}
			if missing.IsZero() {
				missing = now
			}
			if now.Sub(missing) > followNoRelease {
				return &DeployResult{Error: fmt.Sprintf("%v, and no release was made: the leader that ran the deploy stopped before it committed the release; nothing was deployed: run it again", broke)}, nil
			}
		case !st.rolling:
			failing, missing = time.Time{}, time.Time{}
			if stalled.IsZero() {
				stalled = now
			}
			if now.Sub(stalled) > followNoRelease {
				return nil, unknown(fmt.Errorf("v%d stays %s with no rollout", st.release.Version, st.release.Status))
			}
		default:
			failing, missing, stalled = time.Time{}, time.Time{}, time.Time{}
		}
		select {
		case <-ctx.Done():
			return nil, unknown(fmt.Errorf("the call ended while the deploy was followed: %w", context.Cause(ctx)))
		case <-t.C:
		}
	}
}

// deployState is one reading of a broken deploy's state.
type deployState struct {
	release *Release         // the deploy's release; nil when none is known
	rolling bool             // a rollout to it runs
	result  *DeployResult    // its outcome, once it has one
	final   *RolloutProgress // the rollout's last progress seen
}

// deployState reads the deploy's rollout and release (progress goes to
// fn); w.target is set once its release is known.
func (c *Client) deployState(ctx context.Context, w *deployWatch, fn func(DeployLine)) (deployState, error) {
	var st deployState
	p, err := c.Rollout(ctx)
	if err != nil {
		return st, err
	}
	if p != nil && w.target == 0 && !w.rollback && w.before >= 0 && p.Spec.To > w.before {
		w.target = p.Spec.To
	}
	if p != nil && p.Spec.To == w.target {
		fn(DeployLine{Progress: p})
		st.rolling, st.final = !p.Phase.Terminal(), p
	}
	rels, err := c.Releases(ctx)
	if err != nil {
		return st, err
	}
	st.release = w.release(rels)
	if st.release == nil || st.rolling {
		return st, nil
	}
	r := st.release
	w.target = r.Version
	switch {
	case r.Status == api.ReleaseActive, r.Status == api.ReleaseSuperseded && !w.rollback && !r.Served.IsZero():
		// Superseded: it served, and a later deploy replaced it.
		st.result = &DeployResult{OK: true, Version: r.Version}
	case r.Status == api.ReleaseFailed, r.Status == api.ReleaseRolledBack, r.Status == api.ReleaseSuperseded && !w.rollback:
		st.result = &DeployResult{Version: r.Version, Final: st.final,
			Error: fmt.Sprintf("v%d %s after the leader changed: see shoal events for why", r.Version, r.Status)}
	}
	return st, nil
}

// release finds the deploy's release among rels: the target of its
// rollout, else the newest release made after before (of the deployed
// artifact, when the deploy sent one).
func (w *deployWatch) release(rels []Release) *Release {
	var found *Release
	for i := range rels {
		r := &rels[i]
		switch {
		case w.target > 0:
			if r.Version == w.target {
				return r
			}
		case w.before >= 0 && r.Version > w.before && (w.digest == "" || r.Digest == w.digest):
			if found == nil || r.Version > found.Version {
				found = r
			}
		}
	}
	return found
}

// envStored checks that the stored overrides hold ch: every name it sets
// is there, none it unsets is.
func (c *Client) envStored(ctx context.Context, ch *envChange) error {
	vs, err := c.Env(ctx)
	if err != nil {
		return fmt.Errorf("the env overrides could not be read back (%w)", err)
	}
	have := map[string]bool{}
	for _, v := range vs {
		have[v.Name] = true
	}
	for _, n := range ch.set {
		if !have[n] {
			return fmt.Errorf("the change is not stored (%s is not set: the leader put the overrides back)", n)
		}
	}
	for _, n := range ch.unset {
		if have[n] {
			return fmt.Errorf("the change is not stored (%s is still set: the leader put the overrides back)", n)
		}
	}
	return nil
}
