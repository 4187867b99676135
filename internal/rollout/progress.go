package rollout

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Progress is a rollout as the CLI and the dashboard show it
// ([api.RolloutProgress]). It is a copy; the caller owns it.
type Progress = api.RolloutProgress

// Progress returns the rollout's state at now for display. It changes
// nothing.
func (r *Rollout) Progress(now time.Time) Progress {
	p := Progress{
		Spec:           r.spec.Progress(),
		Target:         r.Target(),
		Phase:          r.phase,
		Done:           r.done,
		Total:          r.desired(),
		MaxSurge:       r.surge,
		MaxUnavailable: r.unavailable,
		Started:        r.started,
		Ended:          r.ended,
		Reason:         r.reason,
	}
	end := now
	if !r.ended.IsZero() {
		end = r.ended
	}
	p.Elapsed = max(end.Sub(r.started), 0)
	for _, in := range r.last {
		if in.State.Live() {
			if _, drained := r.drains[in.ID]; drained && in.State != api.Draining {
				in.State = api.Draining
			}
			p.Instances = append(p.Instances, in)
		}
	}
	slices.SortFunc(p.Instances, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.Release, b.Release), strings.Compare(a.ID, b.ID))
	})
	if r.failure != nil {
		f := *r.failure
		p.Failure = &f
	}
	return p
}

// Progress returns s as [Progress] shows it: the one place where a spec
// becomes its wire form.
func (s Spec) Progress() api.RolloutSpec {
	p := s.Policy
	return api.RolloutSpec{Group: s.Group, From: s.From, To: s.To, Desired: s.Desired, Policy: api.RolloutPolicy{
		MaxSurge: p.MaxSurge.String(), MaxUnavailable: p.MaxUnavailable.String(), BatchTimeout: p.BatchTimeout,
		HealthGrace: p.HealthGrace, DrainTimeout: p.DrainTimeout, MaxFailures: p.MaxFailures,
	}}
}
