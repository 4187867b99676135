package rollout

import (
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

// Instance is one observed instance of the group, of any release
// ([api.RolloutInstance]). The controller builds the slice it passes to
// [Rollout.Step] from what its hosts and health checks report, never from
// disk.
type Instance = api.RolloutInstance

// Phase is the state of a rollout ([api.RolloutPhase]), printed and
// persisted as its snake_case name. See the package documentation for the
// diagram.
type Phase = api.RolloutPhase

// Rollout phases ([api.RolloutPhase]). PhaseDone, PhaseFailed,
// PhaseRolledBack and PhaseAborted are terminal.
const (
	PhaseSurging        = api.PhaseSurging
	PhaseWaitingHealthy = api.PhaseWaitingHealthy
	PhaseDraining       = api.PhaseDraining
	PhaseDone           = api.PhaseDone
	PhaseFailed         = api.PhaseFailed
	PhaseRollingBack    = api.PhaseRollingBack
	PhaseRolledBack     = api.PhaseRolledBack
	PhaseAborted        = api.PhaseAborted
)

// Failure says why a rollout stopped going forward ([api.RolloutFailure]).
type Failure = api.RolloutFailure
