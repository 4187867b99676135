package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/store"
)

// DefaultWriteTimeout bounds each write of a Writer of zero Timeout.
const DefaultWriteTimeout = 30 * time.Second

// Writer is the store.Writer of a replicated server: each method is the
// store's method of the same name made a store.Command and applied
// through the node (Node.Apply), returning the same results and errors
// once this node's replica holds the write. On a node that does not lead,
// every method fails with a *NotLeaderError. A write that outlives
// Timeout, or is cut by a change of leader, fails with an error wrapping
// ErrUnknownOutcome.
type Writer struct {
	Node *Node
	// Timeout bounds each write; zero is DefaultWriteTimeout.
	Timeout time.Duration
}

var _ store.Writer = Writer{}

func (w Writer) apply(c store.Command) (any, error) {
	d := w.Timeout
	if d <= 0 {
		d = DefaultWriteTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.Node.Apply(ctx, c)
}

// PutGroup is store.Store.PutGroup.
func (w Writer) PutGroup(g api.Group) error {
	_, err := w.apply(store.PutGroup{Group: g})
	return err
}

// UpdateGroup is store.Store.UpdateGroup (Node.UpdateGroup: fn may run
// more than once).
func (w Writer) UpdateGroup(app string, fn func(*api.Group) error) (api.Group, error) {
	d := w.Timeout
	if d <= 0 {
		d = DefaultWriteTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.Node.UpdateGroup(ctx, app, fn)
}

// SetDesired is store.Store.SetDesired.
func (w Writer) SetDesired(app string, n int) error {
	_, err := w.apply(store.SetDesired{App: app, Desired: n})
	return err
}

// PutRelease is store.Store.PutRelease.
func (w Writer) PutRelease(r api.Release) (api.Release, error) {
	res, err := w.apply(store.PutRelease{Release: r})
	if err != nil {
		return api.Release{}, err
	}
	return res.(api.Release), nil
}

// SetReleaseStatus is store.Store.SetReleaseStatus.
func (w Writer) SetReleaseStatus(app string, version int, status api.ReleaseStatus) error {
	_, err := w.apply(store.SetReleaseStatus{App: app, Version: version, Status: status})
	return err
}

// Activate is store.Store.Activate.
func (w Writer) Activate(app string, version int, previous api.ReleaseStatus) error {
	_, err := w.apply(store.Activate{App: app, Version: version, Previous: previous})
	return err
}

// MarkServed is store.Store.MarkServed.
func (w Writer) MarkServed(app string, version int, at time.Time) error {
	_, err := w.apply(store.MarkServed{App: app, Version: version, At: at})
	return err
}

// PruneReleases is store.Store.PruneReleases.
func (w Writer) PruneReleases(app string, keep int, protect ...int) ([]api.Release, error) {
	res, err := w.apply(store.PruneReleases{App: app, Keep: keep, Protect: protect})
	if err != nil {
		return nil, err
	}
	return res.([]api.Release), nil
}

// PutRollout is store.Store.PutRollout.
func (w Writer) PutRollout(r store.Rollout) error {
	_, err := w.apply(store.PutRollout{Rollout: r})
	return err
}

// DeleteRollout is store.Store.DeleteRollout.
func (w Writer) DeleteRollout(app string) error {
	_, err := w.apply(store.DeleteRollout{App: app})
	return err
}

// AppendEvent is store.Store.AppendEvent.
func (w Writer) AppendEvent(app string, e api.Event) (api.Event, error) {
	evs, err := w.AppendEvents(app, []api.Event{e})
	if err != nil {
		return api.Event{}, err
	}
	return evs[0], nil
}

// AppendEvents is store.Store.AppendEvents.
func (w Writer) AppendEvents(app string, evs []api.Event) ([]api.Event, error) {
	if len(evs) == 0 {
		return []api.Event{}, nil
	}
	res, err := w.apply(store.AppendEvents{App: app, Events: evs})
	if err != nil {
		return nil, err
	}
	return res.([]api.Event), nil
}

// UpdateEnvOverrides is store.Store.UpdateEnvOverrides.
func (w Writer) UpdateEnvOverrides(app string, set []api.EnvVar, unset []string) ([]api.EnvVar, error) {
	res, err := w.apply(store.UpdateEnvOverrides{App: app, Set: set, Unset: unset})
	if err != nil {
		return nil, err
	}
	return res.([]api.EnvVar), nil
}

// Key is store.Store.Key: a key this replica holds is returned as it is;
// otherwise the leader draws size random bytes and proposes them, and the
// key that wins (the first one committed) is returned.
func (w Writer) Key(name string, size int) ([]byte, error) {
	if name == "" || size < 1 {
		return nil, fmt.Errorf("key: %w: name %q, size %d", store.ErrInvalid, name, size)
	}
	if k, ok, err := w.Node.Store().HasKey(name); err != nil || ok {
		return k, err
	}
	fresh := make([]byte, size)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	res, err := w.apply(store.PutKey{Name: name, Key: fresh})
	if err != nil {
		return nil, err
	}
	return res.([]byte), nil
}

// PutMember records where server m serves (store.PutMember).
func (w Writer) PutMember(m api.ClusterMember) error {
	_, err := w.apply(store.PutMember{Member: m})
	return err
}
