package uisource

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/rollout"
	"github.com/shoal-dev/shoal/internal/store"
)

// rollbackStartWait bounds how long Rollback waits for the controller to
// start the rollout; starting takes no I/O but the controller's lock.
const rollbackStartWait = 10 * time.Second

// Releases implements dashboard.Source: the controller's releases, newest
// first, with the statuses the dashboard knows ("current", "deploying",
// "previous", "failed", ...).
func (s *Source) Releases(ctx context.Context, app string) ([]dashboard.Release, error) {
	if app != s.app {
		return nil, fmt.Errorf("app %s: %w", app, dashboard.ErrNotFound)
	}
	rels, err := s.o.Controller.Releases()
	if err != nil {
		return nil, fmt.Errorf("releases of %s: %w", app, err)
	}
	var target int
	if p := s.progress(); p != nil && !p.Phase.Terminal() {
		target = p.Target
	}
	out := make([]dashboard.Release, 0, len(rels))
	for _, r := range rels {
		dr := dashboard.Release{Version: r.Version, Digest: r.Digest, CreatedAt: r.CreatedAt, Change: change(r)}
		switch {
		case r.Version == target && !r.Current:
			dr.Status = "deploying"
		case r.Current:
			dr.Status = "current"
		case r.Previous: // the release `shoal rollback` goes to: the last earlier one that served
			dr.Status = "previous"
		default:
			dr.Status = strings.ReplaceAll(string(r.Status), "_", " ")
		}
		out = append(out, dr)
	}
	return out, nil
}

// change says what a release changed, in a few words.
func change(r api.ReleaseInfo) string {
	switch r.Change {
	case api.ChangeInitial:
		return "first release"
	case api.ChangeCode:
		return "new build " + shortDigest(r.Digest)
	case api.ChangeConfig:
		return "run configuration"
	case api.ChangeRollback:
		return "rollback"
	}
	return r.Change
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// Rollback implements dashboard.Source: a rolling deploy back to version
// through the controller. The controller's Rollback blocks until the
// rollout ends; this returns once it has started (the rollout goes on
// when the call that started it stops waiting), or with the error that
// kept it from starting.
func (s *Source) Rollback(ctx context.Context, app string, version int) error {
	if app != s.app {
		return fmt.Errorf("app %s: %w", app, dashboard.ErrNotFound)
	}
	if p := s.progress(); p != nil && !p.Phase.Terminal() {
		return fmt.Errorf("roll back %s: a deploy to v%d is in progress: %w", app, p.Target, dashboard.ErrConflict)
	}
	ctx, cancel := context.WithTimeout(ctx, rollbackStartWait)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.o.Controller.Rollback(ctx, version) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			if err != nil && !s.started(version) {
				return fmt.Errorf("roll back %s to v%d: %w", app, version, classify(err))
			}
			return nil // ended already, or went on without us
		case <-tick.C:
		}
		if s.started(version) {
			p := s.progress()
			s.deploy(p, s.o.Controller.Status()) // remember it, however short
			cancel()                             // stop waiting; the rollout goes on
			<-errc
			return nil
		}
	}
}

// started reports whether a rollout to version runs.
func (s *Source) started(version int) bool {
	p := s.progress()
	return p != nil && p.Spec.To == version
}

// classify adds the dashboard's sentinel to a controller error so that
// the page answers with the right status.
func classify(err error) error {
	var locked *rollout.LockedError
	switch {
	case errors.Is(err, controller.ErrUnknownRelease), errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %w", dashboard.ErrNotFound, err)
	case errors.Is(err, controller.ErrNoChange), errors.As(err, &locked):
		return fmt.Errorf("%w: %w", dashboard.ErrConflict, err)
	}
	return err
}

// progress returns the controller's rollout, or nil when none runs.
func (s *Source) progress() *rollout.Progress { return s.o.Controller.Rollout() }

// deploy returns the rollout in flight, or the last one seen (inactive),
// or nil when none was seen since the Source started. p is the
// controller's rollout and st its status, read in that order: the
// controller records a rollout's outcome (release statuses, the group's
// release) before Rollout turns nil, so a status read after a nil p
// holds the outcome. A terminal p means the outcome is still being
// recorded: the rollout is shown as last seen until p turns nil.
func (s *Source) deploy(p *rollout.Progress, st api.Status) *dashboard.Deploy {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p != nil && p.Phase.Terminal() && s.last != nil {
		d := *s.last
		return &d
	}
	if p == nil {
		if s.last != nil && s.last.Active {
			// The rollout ended between two looks: say where it ended.
			s.last.Active = false
			if st.Release == s.last.To {
				s.last.Phase, s.last.Done = "done", s.last.Total
			} else {
				s.last.Phase = fmt.Sprintf("ended on v%d", st.Release)
			}
		}
		if s.last == nil {
			return nil
		}
		d := *s.last
		return &d
	}
	d := &dashboard.Deploy{Active: !p.Phase.Terminal(), From: p.Spec.From, To: p.Spec.To, Done: p.Done,
		Total: p.Total, Phase: phase(p), Started: p.Started}
	if p.Spec.To < p.Spec.From {
		d.Rollback = true
	}
	if p.Phase == rollout.PhaseRollingBack {
		// Going back to From after a failure: the group is moving to From.
		d.Rollback, d.From, d.To = true, p.Spec.To, p.Spec.From
	}
	s.last = d
	c := *d
	return &c
}

// phase says where a rollout stands in the dashboard's words.
func phase(p *rollout.Progress) string {
	var s string
	switch p.Phase {
	case rollout.PhaseSurging:
		s = "launching"
	case rollout.PhaseWaitingHealthy:
		s = "waiting for health"
	case rollout.PhaseDraining:
		s = "draining"
	case rollout.PhaseDone:
		s = "done"
	case rollout.PhaseRollingBack:
		s = "rolling back"
	default:
		s = strings.ReplaceAll(p.Phase.String(), "_", " ")
	}
	if p.Failure != nil {
		s += ": " + p.Failure.String()
	}
	return s
}
