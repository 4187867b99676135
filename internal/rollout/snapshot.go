package rollout

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// SnapshotVersion is the version of the [Snapshot] format this package
// writes and reads.
const SnapshotVersion = 1

// Snapshot is the persisted form of a [Rollout]: its decisions, never its
// observations. The controller stores it (JSON) whenever a Step changes
// anything, and on restart calls [Restore] and goes on stepping with fresh
// observations: the rollout then resumes or keeps rolling back; instances
// that vanished while the controller was down do not count as crashes.
type Snapshot struct {
	Version   int               `json:"version"`
	Spec      Spec              `json:"spec"`
	Phase     Phase             `json:"phase"`
	Back      bool              `json:"rolling_back,omitempty"`
	Aborted   bool              `json:"aborted,omitempty"`
	Started   time.Time         `json:"started"`
	Ended     time.Time         `json:"ended,omitzero"`
	Failure   *Failure          `json:"failure,omitempty"`
	Failures  int               `json:"failures,omitempty"`
	LastCrash *Failure          `json:"last_crash,omitempty"`
	Tracked   []TrackedSnapshot `json:"tracked,omitempty"`
	Drains    []DrainSnapshot   `json:"drains,omitempty"`
	Done      int               `json:"done"`
	Reason    string            `json:"reason,omitempty"`
}

// TrackedSnapshot is a live instance of the target release the rollout
// watches for its deadline and crashes.
type TrackedSnapshot struct {
	ID        string    `json:"id"`
	FirstSeen time.Time `json:"first_seen"`
	Served    bool      `json:"served,omitempty"`
	Restarts  int       `json:"restarts,omitempty"`
	Ended     bool      `json:"ended,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// DrainSnapshot is an instance the rollout asked to drain, and when.
type DrainSnapshot struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// Snapshot returns the persisted form of r, with entries in a stable
// order so that equal rollouts give equal snapshots.
func (r *Rollout) Snapshot() Snapshot {
	s := Snapshot{
		Version:  SnapshotVersion,
		Spec:     r.spec,
		Phase:    r.phase,
		Back:     r.back,
		Aborted:  r.aborted,
		Started:  r.started,
		Ended:    r.ended,
		Failures: r.failures,
		Done:     r.done,
		Reason:   r.reason,
	}
	if r.failure != nil {
		f := *r.failure
		s.Failure = &f
	}
	if r.lastCrash != nil {
		f := *r.lastCrash
		s.LastCrash = &f
	}
	for _, id := range sortedKeys(r.tracked) {
		t := r.tracked[id]
		s.Tracked = append(s.Tracked, TrackedSnapshot{ID: id, FirstSeen: t.firstSeen, Served: t.served,
			Restarts: t.restarts, Ended: t.ended, Reason: t.reason})
	}
	for _, id := range sortedKeys(r.drains) {
		s.Drains = append(s.Drains, DrainSnapshot{ID: id, At: r.drains[id]})
	}
	return s
}

// Restore rebuilds a rollout from a snapshot written by
// [Rollout.Snapshot]. It rejects another version and any inconsistent or
// out-of-range content with an error listing every problem, so a damaged
// store never drives a deploy.
func Restore(s Snapshot) (*Rollout, error) {
	if s.Version != SnapshotVersion {
		return nil, fmt.Errorf("restore rollout: snapshot version %d, want %d", s.Version, SnapshotVersion)
	}
	var errs []error
	if err := s.Spec.validate(); err != nil {
		errs = append(errs, err)
	}
	if !s.Phase.Valid() {
		errs = append(errs, fmt.Errorf("invalid phase %d", s.Phase))
	}
	switch s.Phase {
	case PhaseSurging, PhaseWaitingHealthy, PhaseDraining, PhaseDone:
		if s.Back {
			errs = append(errs, fmt.Errorf("phase %s while rolling back", s.Phase))
		}
	case PhaseRollingBack, PhaseRolledBack, PhaseFailed, PhaseAborted:
		if !s.Back {
			errs = append(errs, fmt.Errorf("phase %s without rolling back", s.Phase))
		}
	}
	if s.Aborted != (s.Phase == PhaseAborted) && s.Phase != PhaseRollingBack && s.Phase != PhaseFailed {
		errs = append(errs, fmt.Errorf("aborted flag %v in phase %s", s.Aborted, s.Phase))
	}
	if s.Aborted && !s.Back {
		errs = append(errs, errors.New("aborted without rolling back"))
	}
	if s.Phase.Terminal() != !s.Ended.IsZero() {
		errs = append(errs, fmt.Errorf("phase %s with end time %v", s.Phase, s.Ended))
	}
	if s.Failures < 0 || s.Failures > maxQuantity || (s.Failures > 0 && s.LastCrash == nil) {
		errs = append(errs, fmt.Errorf("invalid crash count %d", s.Failures))
	}
	if s.Done < 0 || s.Done > s.Spec.Desired {
		errs = append(errs, fmt.Errorf("done %d not in [0, %d]", s.Done, s.Spec.Desired))
	}
	if n := len(s.Tracked) + len(s.Drains); n > 4*maxQuantity {
		errs = append(errs, fmt.Errorf("%d instances recorded", n))
	}
	r := &Rollout{
		spec: s.Spec, phase: s.Phase, back: s.Back, aborted: s.Aborted, started: s.Started, ended: s.Ended,
		failures: s.Failures, done: s.Done, reason: s.Reason, resumed: true, lastNow: s.Started,
	}
	r.spec.Policy = r.spec.Policy.WithDefaults()
	r.init()
	for _, t := range s.Tracked {
		if t.ID == "" || r.tracked[t.ID] != nil || t.Restarts < 0 {
			errs = append(errs, fmt.Errorf("invalid or repeated tracked instance %q", t.ID))
			continue
		}
		r.tracked[t.ID] = &tracked{firstSeen: t.FirstSeen, served: t.Served, restarts: t.Restarts, ended: t.Ended, reason: t.Reason}
	}
	for _, d := range s.Drains {
		if _, dup := r.drains[d.ID]; d.ID == "" || dup {
			errs = append(errs, fmt.Errorf("invalid or repeated drained instance %q", d.ID))
			continue
		}
		r.drains[d.ID] = d.At
		r.redrain[d.ID] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("restore rollout: %w", err)
	}
	if s.Failure != nil {
		f := *s.Failure
		r.failure = &f
	}
	if s.LastCrash != nil {
		f := *s.LastCrash
		r.lastCrash = &f
	}
	return r, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
