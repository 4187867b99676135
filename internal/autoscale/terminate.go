package autoscale

import (
	"cmp"
	"slices"
	"time"
)

// Instance is what the termination policy knows of a running instance.
type Instance struct {
	ID string
	// Release is the number of the release the instance runs.
	Release int
	// Started is when the instance was launched.
	Started time.Time
	// Protected instances are never chosen for scale-in (per-instance
	// scale-in protection).
	Protected bool
}

// ChooseScaleIn returns the IDs of up to n instances to drain and stop
// for a scale-in, in the order to stop them: instances not on
// currentRelease before those on it, then the oldest release (lowest
// number), then the oldest instance (earliest Started), then the smallest
// ID so the choice is deterministic. Protected instances are never
// chosen, so fewer than n IDs come back when too many are protected. It
// does not modify instances.
func ChooseScaleIn(instances []Instance, n int, currentRelease int) []string {
	if n <= 0 {
		return nil
	}
	var cands []Instance
	for _, in := range instances {
		if !in.Protected {
			cands = append(cands, in)
		}
	}
	slices.SortFunc(cands, func(a, b Instance) int {
		aCur, bCur := a.Release == currentRelease, b.Release == currentRelease
		if aCur != bCur {
			if aCur {
				return 1
			}
			return -1
		}
		return cmp.Or(
			cmp.Compare(a.Release, b.Release),
			a.Started.Compare(b.Started),
			cmp.Compare(a.ID, b.ID),
		)
	})
	ids := make([]string, 0, min(n, len(cands)))
	for _, in := range cands[:min(n, len(cands))] {
		ids = append(ids, in.ID)
	}
	return ids
}
