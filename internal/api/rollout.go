package api

import (
	"fmt"
	"time"
)

// RolloutPhase is the state of a rolling deploy, sent and persisted as its
// snake_case name. Package rollout, which moves a rollout between phases,
// draws the diagram.
type RolloutPhase uint8

// Rollout phases. PhaseDone, PhaseFailed, PhaseRolledBack and PhaseAborted
// are terminal.
const (
	PhaseSurging        RolloutPhase = iota // launching instances of the new release
	PhaseWaitingHealthy                     // new instances launched, not yet in service
	PhaseDraining                           // old instances draining; waiting for them to stop
	PhaseDone                               // every instance runs the new release
	PhaseFailed                             // the rollback itself failed; the operator must act
	PhaseRollingBack                        // returning the group to the previous release
	PhaseRolledBack                         // back on the previous release after a failure
	PhaseAborted                            // back on the previous release after Abort
)

var phaseNames = [...]string{"surging", "waiting_healthy", "draining", "done", "failed", "rolling_back", "rolled_back", "aborted"}

// String returns the snake_case name of p, or "phase(N)" for a value that
// is not a phase.
func (p RolloutPhase) String() string {
	if p.Valid() {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Valid reports whether p is one of the phases.
func (p RolloutPhase) Valid() bool { return int(p) < len(phaseNames) }

// Terminal reports whether no further step changes a rollout in phase p.
func (p RolloutPhase) Terminal() bool {
	return p == PhaseDone || p == PhaseFailed || p == PhaseRolledBack || p == PhaseAborted
}

// ParseRolloutPhase parses a name printed by [RolloutPhase.String].
func ParseRolloutPhase(name string) (RolloutPhase, error) {
	for i, n := range phaseNames {
		if n == name {
			return RolloutPhase(i), nil
		}
	}
	return 0, fmt.Errorf("unknown rollout phase %q", name)
}

// MarshalText encodes p as its name; a value that is not a phase is an
// error.
func (p RolloutPhase) MarshalText() ([]byte, error) {
	if !p.Valid() {
		return nil, fmt.Errorf("invalid rollout phase %d", uint8(p))
	}
	return []byte(phaseNames[p]), nil
}

// UnmarshalText decodes a name printed by [RolloutPhase.String].
func (p *RolloutPhase) UnmarshalText(b []byte) error {
	v, err := ParseRolloutPhase(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// RolloutInstance is one observed instance of a group, of any release, as a
// rollout sees it: the controller builds them from what its hosts and health
// checks report (never from disk), and RolloutProgress lists them.
type RolloutInstance struct {
	// ID identifies the instance; it must be unique within one
	// observation and never reused for another instance.
	ID string `json:"id"`
	// Release is the release number the instance runs.
	Release int `json:"release"`
	// State is its lifecycle state.
	State State `json:"state"`
	// Since is when it entered State.
	Since time.Time `json:"since"`
	// Restarts counts in-place restarts of its process (a runtime that
	// restarts a crashed process under the same ID). Each increase of an
	// instance of the release being rolled to counts as a crash.
	Restarts int `json:"restarts,omitempty"`
	// Reason is the controller's last word on the instance's state or
	// health ("status 500 from /health", "exited with code 1"). A rollout
	// copies it into a [RolloutFailure] that names this instance. It must
	// already be redacted: it ends up in events and the CLI.
	Reason string `json:"reason,omitempty"`
}

// RolloutFailure says why a rollout stopped going forward: which instance,
// and why. InstanceID is empty when the failure concerns no one instance
// (an operator's abort, an actuator error).
type RolloutFailure struct {
	InstanceID string `json:"instance_id,omitempty"`
	Release    int    `json:"release,omitempty"`
	Reason     string `json:"reason"`
}

// String describes the failure in one line for events and the CLI.
func (f *RolloutFailure) String() string {
	if f.InstanceID == "" {
		return f.Reason
	}
	return fmt.Sprintf("instance %s (v%d): %s", f.InstanceID, f.Release, f.Reason)
}

// RolloutSpec is what a rollout does, as RolloutProgress shows it: move
// Group's Desired instances from release From to release To under Policy.
type RolloutSpec struct {
	Group   string        `json:"group,omitempty"`
	From    int           `json:"from"`
	To      int           `json:"to"`
	Desired int           `json:"desired"`
	Policy  RolloutPolicy `json:"policy"`
}

// RolloutPolicy is the deploy policy a rollout runs with, as
// RolloutProgress shows it. Zero fields are the defaults; MaxSurge and
// MaxUnavailable are a count ("1") or a percentage ("25%"), "" when unset.
type RolloutPolicy struct {
	MaxSurge       string        `json:"max_surge,omitempty"`
	MaxUnavailable string        `json:"max_unavailable,omitempty"`
	BatchTimeout   time.Duration `json:"batch_timeout,omitzero"`
	HealthGrace    time.Duration `json:"health_grace,omitzero"`
	DrainTimeout   time.Duration `json:"drain_timeout,omitzero"`
	MaxFailures    int           `json:"max_failures,omitzero"`
}

// RolloutProgress is a rollout as the CLI and the dashboard show it (GET
// /v1/deploy, and the progress lines of a deploy stream). It is a copy; the
// caller owns it.
type RolloutProgress struct {
	Spec RolloutSpec `json:"spec"`
	// Target is the release the group is moving to now (From while
	// rolling back).
	Target int          `json:"target"`
	Phase  RolloutPhase `json:"phase"`
	// Done of Total instances run Target and are in service.
	Done  int `json:"done"`
	Total int `json:"total"`
	// MaxSurge and MaxUnavailable are the resolved limits, in instances.
	MaxSurge       int `json:"max_surge"`
	MaxUnavailable int `json:"max_unavailable"`
	// Started is when the rollout began; Ended when it reached a terminal
	// phase (zero until then). Elapsed runs from Started to Ended, or to
	// the time the progress was taken.
	Started time.Time     `json:"started"`
	Ended   time.Time     `json:"ended,omitzero"`
	Elapsed time.Duration `json:"elapsed"`
	// Instances are those of the last observation that still run
	// (draining included), sorted by release then ID.
	Instances []RolloutInstance `json:"instances"`
	// Reason says where the rollout stands.
	Reason string `json:"reason"`
	// Failure is why it stopped going forward, or nil.
	Failure *RolloutFailure `json:"failure,omitempty"`
}
