package store

import (
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Writer is every write the controllers and the server make to the
// desired state, with the signatures and contracts of Store's methods of
// the same names. Reads go to a *Store.
//
// *Store is a Writer: `shoal up` and a single `shoal server` write their
// own file at once. A replicated server (issue 14) writes through
// cluster.Writer instead: each call becomes a Command that the Raft
// leader commits and every replica applies (internal/cluster), and it
// returns once this server's replica holds it.
type Writer interface {
	PutGroup(g api.Group) error
	UpdateGroup(app string, fn func(*api.Group) error) (api.Group, error)
	SetDesired(app string, n int) error
	PutRelease(r api.Release) (api.Release, error)
	SetReleaseStatus(app string, version int, status api.ReleaseStatus) error
	Activate(app string, version int, previous api.ReleaseStatus) error
	MarkServed(app string, version int, at time.Time) error
	PruneReleases(app string, keep int, protect ...int) ([]api.Release, error)
	PutRollout(r Rollout) error
	DeleteRollout(app string) error
	AppendEvent(app string, e api.Event) (api.Event, error)
	AppendEvents(app string, evs []api.Event) ([]api.Event, error)
	UpdateEnvOverrides(app string, set []api.EnvVar, unset []string) ([]api.EnvVar, error)
	Key(name string, size int) ([]byte, error)
}

var _ Writer = (*Store)(nil)
