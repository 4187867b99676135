package rollout

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Progress is a rollout as the CLI and the dashboard show it. It is a
// copy; the caller owns it.
type Progress struct {
	Spec Spec `json:"spec"`
	// Target is the release the group is moving to now (From while
	// rolling back).
	Target int   `json:"target"`
	Phase  Phase `json:"phase"`
	// Done of Total instances run Target and are in service.
	Done  int `json:"done"`
	Total int `json:"total"`
	// MaxSurge and MaxUnavailable are the resolved limits, in instances.
	MaxSurge       int `json:"max_surge"`
	MaxUnavailable int `json:"max_unavailable"`
	// Started is when the rollout began; Ended when it reached a terminal
	// phase (zero until then). Elapsed runs from Started to Ended, or to
	// the time given to Progress.
	Started time.Time     `json:"started"`
	Ended   time.Time     `json:"ended,omitzero"`
	Elapsed time.Duration `json:"elapsed"`
	// Instances are those of the last Step's observation that still run
	// (draining included), sorted by release then ID.
	Instances []Instance `json:"instances"`
	// Reason says where the rollout stands.
	Reason string `json:"reason"`
	// Failure is why it stopped going forward, or nil.
	Failure *Failure `json:"failure,omitempty"`
}

// Progress returns the rollout's state at now for display. It changes
// nothing.
func (r *Rollout) Progress(now time.Time) Progress {
	p := Progress{
		Spec:           r.spec,
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
			if _, drained := r.drains[in.ID]; drained && in.State != Draining {
				in.State = Draining
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
