package rollout

import (
	"github.com/shoal-dev/shoal/internal/api"
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
