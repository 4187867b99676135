package daemon

import (
	"errors"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/cluster"
	"github.com/shoal-dev/shoal/internal/store"
)

// clusterError gives a cluster's refusal its status, by the error's
// type: a write this server did not propose because it does not (or no
// longer) lead (*cluster.NotLeaderError) is a 503 with Retry-After
// (adminapi.ErrTryAgain: the client sends it again, and a follower then
// forwards it to the new leader); a write proposed before the lead was
// lost, or whose wait ended (cluster.ErrUnknownOutcome), is a 503 whose
// outcome is unknown (adminapi.ErrOutcomeUnknown): it may still commit.
// Other errors are returned as they are.
func clusterError(err error) error {
	var notLeader *cluster.NotLeaderError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cluster.ErrUnknownOutcome):
		return adminapi.WithStatus(adminapi.ErrOutcomeUnknown, err)
	case errors.As(err, &notLeader):
		return adminapi.WithStatus(adminapi.ErrTryAgain, err)
	}
	return err
}

// clusterWriter is the store.Writer of a server of a cluster, which its
// controllers and handlers write through: cluster.Writer, with each
// error given its status by clusterError, so that a write refused or cut
// by a change of leader is answered 503 with a clear outcome wherever the
// admin API meets it.
type clusterWriter struct{ w cluster.Writer }

var _ store.Writer = clusterWriter{}

func (c clusterWriter) PutGroup(g api.Group) error { return clusterError(c.w.PutGroup(g)) }

func (c clusterWriter) UpdateGroup(app string, fn func(*api.Group) error) (api.Group, error) {
	g, err := c.w.UpdateGroup(app, fn)
	return g, clusterError(err)
}

func (c clusterWriter) SetDesired(app string, n int) error {
	return clusterError(c.w.SetDesired(app, n))
}

func (c clusterWriter) PutRelease(r api.Release) (api.Release, error) {
	r, err := c.w.PutRelease(r)
	return r, clusterError(err)
}

func (c clusterWriter) SetReleaseStatus(app string, version int, status api.ReleaseStatus) error {
	return clusterError(c.w.SetReleaseStatus(app, version, status))
}

func (c clusterWriter) Activate(app string, version int, previous api.ReleaseStatus) error {
	return clusterError(c.w.Activate(app, version, previous))
}

func (c clusterWriter) MarkServed(app string, version int, at time.Time) error {
	return clusterError(c.w.MarkServed(app, version, at))
}

func (c clusterWriter) PruneReleases(app string, keep int, protect ...int) ([]api.Release, error) {
	rs, err := c.w.PruneReleases(app, keep, protect...)
	return rs, clusterError(err)
}

func (c clusterWriter) PutRollout(r store.Rollout) error { return clusterError(c.w.PutRollout(r)) }

func (c clusterWriter) DeleteRollout(app string) error { return clusterError(c.w.DeleteRollout(app)) }

func (c clusterWriter) AppendEvent(app string, e api.Event) (api.Event, error) {
	e, err := c.w.AppendEvent(app, e)
	return e, clusterError(err)
}

func (c clusterWriter) AppendEvents(app string, evs []api.Event) ([]api.Event, error) {
	evs, err := c.w.AppendEvents(app, evs)
	return evs, clusterError(err)
}

func (c clusterWriter) UpdateEnvOverrides(app string, set []api.EnvVar, unset []string) ([]api.EnvVar, error) {
	vs, err := c.w.UpdateEnvOverrides(app, set, unset)
	return vs, clusterError(err)
}

func (c clusterWriter) Key(name string, size int) ([]byte, error) {
	k, err := c.w.Key(name, size)
	return k, clusterError(err)
}
