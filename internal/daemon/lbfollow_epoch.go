package daemon

import (
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pool"
)

// A new leader's first snapshot (a new epoch, issue 14) comes from pools
// its controllers have just filled: they adopt the running instances
// awaiting the new leader's own check, and until a controller knows its
// release the pool has no check for the nodes either. Its verdicts say
// "not healthy" for targets that serve, and applied as they are they
// would leave a pool with no healthy target until the new leader's checks
// pass (9 GETs answered 503 in a partition run, docs/benchmarks.md). So a
// node does not lower a target it serves healthy on the word of a new
// epoch's snapshot: it keeps its own verdict (its check's, or the last
// leader's) for that target until the new leader sends a change of the
// target (its check passed or failed), the target goes, or the pool's
// check takes over (a pool with a check follows this node's check only).
// Passive ejection still takes out a held target that fails requests.

// keepVerdicts, called before a new epoch's snapshot next is applied,
// holds the targets that b serves healthy and next lists in service with
// a verdict other than healthy.
func (f *lbFollower) keepVerdicts(next api.LBConfig) {
	f.held = map[string]bool{}
	for _, p := range next.Pools {
		bp, ok := f.b.Pool(p.Name)
		if !ok {
			continue
		}
		healthy := map[string]bool{}
		for _, ts := range bp.Status().Targets {
			healthy[ts.Addr] = ts.State == pool.StateHealthy.String()
		}
		for _, t := range p.Targets {
			if t.State == api.LBInService && !t.Healthy && healthy[t.Addr] {
				f.held[p.Name+" "+t.Addr] = true
			}
		}
	}
	if len(f.held) > 0 {
		f.log.Info("new server epoch: keeping this node's verdicts until the server's checks report", "targets", len(f.held))
	}
}

// releaseVerdict ends the hold of the target ch is about (a change of
// the target, or its pool's removal): the server has a verdict for it.
func (f *lbFollower) releaseVerdict(ch api.LBChange) {
	switch ch.Kind {
	case api.LBTargetSet, api.LBTargetRemoved:
		if ch.Target != nil {
			delete(f.held, ch.PoolName+" "+ch.Target.Addr)
		}
	case api.LBPoolRemoved:
		for k := range f.held {
			if strings.HasPrefix(k, ch.PoolName+" ") {
				delete(f.held, k)
			}
		}
	}
}
