package rollout

import (
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// State is the lifecycle state of one instance as the controller observes
// it: the instance state of the one vocabulary ([api.State]), which the
// names below repeat so that this package's code reads as before.
type State = api.State

// Instance states ([api.State]). Pending and Starting both mean "launched,
// not yet in service"; the rollout treats them alike.
const (
	Pending   = api.Pending
	Starting  = api.Starting
	InService = api.InService
	Unhealthy = api.Unhealthy
	Draining  = api.Draining
	Stopped   = api.Stopped
	Failed    = api.Failed
)

// Instance is one observed instance of the group, of any release. The
// controller builds the slice it passes to [Rollout.Step] from what its
// hosts and health checks report, never from disk.
type Instance struct {
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
	// health ("status 500 from /health", "exited with code 1"). The
	// rollout copies it into a [Failure] that names this instance. It
	// must already be redacted: it ends up in events and the CLI.
	Reason string `json:"reason,omitempty"`
}

// Phase is the state of a rollout, printed and persisted as its
// snake_case name. See the package documentation for the diagram.
type Phase uint8

// Rollout phases. PhaseDone, PhaseFailed, PhaseRolledBack and PhaseAborted
// are terminal.
const (
	PhaseSurging        Phase = iota // launching instances of the new release
	PhaseWaitingHealthy              // new instances launched, not yet in service
	PhaseDraining                    // old instances draining; waiting for them to stop
	PhaseDone                        // every instance runs the new release
	PhaseFailed                      // the rollback itself failed; the operator must act
	PhaseRollingBack                 // returning the group to the previous release
	PhaseRolledBack                  // back on the previous release after a failure
	PhaseAborted                     // back on the previous release after Abort
)

var phaseNames = [...]string{"surging", "waiting_healthy", "draining", "done", "failed", "rolling_back", "rolled_back", "aborted"}

// String returns the snake_case name of p.
func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Terminal reports whether no further step changes a rollout in phase p.
func (p Phase) Terminal() bool {
	return p == PhaseDone || p == PhaseFailed || p == PhaseRolledBack || p == PhaseAborted
}

// ParsePhase parses a name printed by [Phase.String].
func ParsePhase(name string) (Phase, error) {
	for i, n := range phaseNames {
		if n == name {
			return Phase(i), nil
		}
	}
	return 0, fmt.Errorf("unknown rollout phase %q", name)
}

// MarshalText encodes p as its name.
func (p Phase) MarshalText() ([]byte, error) {
	if int(p) >= len(phaseNames) {
		return nil, fmt.Errorf("invalid rollout phase %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText decodes a name printed by [Phase.String].
func (p *Phase) UnmarshalText(b []byte) error {
	v, err := ParsePhase(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Failure says why a rollout stopped going forward: which instance, and
// why. InstanceID is empty when the failure concerns no one instance
// (an operator's abort, an actuator error).
type Failure struct {
	InstanceID string `json:"instance_id,omitempty"`
	Release    int    `json:"release,omitempty"`
	Reason     string `json:"reason"`
}

// String describes the failure in one line for events and the CLI.
func (f *Failure) String() string {
	if f.InstanceID == "" {
		return f.Reason
	}
	return fmt.Sprintf("instance %s (v%d): %s", f.InstanceID, f.Release, f.Reason)
}
