package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/reconcile"
)

// Evacuator is implemented by a Host that can ask the controller to move
// instances off the machine they run on (a fleet whose host is drained).
// A controller whose Host is an Evacuator reads Evacuations while it runs.
type Evacuator interface {
	// Evacuations delivers, per machine, which of the app's instances must
	// leave it. The channel is owned by the host and never closed while
	// the host is open.
	Evacuations() <-chan Evacuation
}

// Evacuation says which instances of the app must leave one machine.
// Each Evacuation of a machine replaces the previous one: IDs are all the
// instances that must leave it now, and an Evacuation with no IDs
// withdraws the request (the machine is no longer drained; instances being
// moved stay where they are, and a replacement not yet in service is
// stopped as surplus). Nothing moves back.
//
// The controller moves each instance launch first (reconcile.Instance.Move):
// a replacement of the same release is launched, at most
// group.max_replacing at a time, and the instance is drained from the pool
// and stopped only once its replacement is in service. A replacement the
// host cannot place now stays pending with the host's reason and is tried
// again, while the instance keeps serving. During a rollout the move waits
// for the rollout to end (the rollout replaces the old release's instances
// anyway, and places its new ones elsewhere).
//
// An id the controller does not know yet (an instance it is adopting) is
// kept for evacuateUnknownFor, then forgotten.
type Evacuation struct {
	// Host names the machine ("h1").
	Host string
	// IDs are the instances that must leave it, sorted.
	IDs []string
	// Reason says why ("draining").
	Reason string
}

// evacuateUnknownFor is how long a requested move of an instance the
// controller does not know is kept, for an adoption in progress to find.
const evacuateUnknownFor = time.Minute

// move is one instance to move off its machine; guarded by Controller.mu.
type move struct {
	host, reason string
	at           time.Time // when it was asked
	known        bool      // the instance was seen in the table
}

// words is the move as reconcile.Instance.Move and the events say it.
func (m *move) words() string { return fmt.Sprintf("off host %s (%s)", m.host, m.reason) }

// watchEvacuations records the host's evacuations until ctx ends.
func (c *Controller) watchEvacuations(ctx context.Context, ev Evacuator) {
	ch := ev.Evacuations()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			c.evacuate(e)
		}
	}
}

// evacuate records e: the instances it names are marked to move, and the
// earlier marks of its machine that it does not name are withdrawn.
func (c *Controller) evacuate(e Evacuation) {
	c.mu.Lock()
	if c.moves == nil {
		c.moves = map[string]*move{}
	}
	now := c.now()
	var added, withdrawn []string
	for id, m := range c.moves {
		if m.host == e.Host && !slices.Contains(e.IDs, id) {
			delete(c.moves, id)
			if _, ok := c.instances[id]; ok {
				withdrawn = append(withdrawn, id)
			}
		}
	}
	for _, id := range e.IDs {
		if m := c.moves[id]; m != nil && m.host == e.Host {
			continue
		}
		m := &move{host: e.Host, reason: e.Reason, at: now}
		if _, ok := c.instances[id]; ok {
			m.known = true
			added = append(added, id)
		}
		c.moves[id] = m
	}
	slices.Sort(added)
	slices.Sort(withdrawn)
	rel := c.current.Version
	if len(added) > 0 {
		reason := fmt.Sprintf("host %s %s: moving %d instances off it, launch first (%s)", e.Host, e.Reason,
			len(added), strings.Join(added, ", "))
		if c.dep.active != nil {
			reason += "; after the rollout in progress"
		}
		c.events.add(api.Event{Type: "move", Release: rel, Reason: reason})
		c.log.Info("moving instances", "host", e.Host, "reason", e.Reason, "instances", len(added))
	}
	if len(withdrawn) > 0 {
		c.events.add(api.Event{Type: "move", Release: rel, Reason: fmt.Sprintf("host %s no longer %s: %s stay",
			e.Host, e.Reason, strings.Join(withdrawn, ", "))})
	}
	c.mu.Unlock()
	c.poke()
}

// observedLocked is in as the reconciler sees it, with its move.
func (c *Controller) observedLocked(in *instance) reconcile.Instance {
	o := in.observed()
	if m := c.moves[in.id]; m != nil {
		m.known = true
		o.Move = m.words()
	}
	return o
}

// pruneMovesLocked forgets the moves of instances that ended, and of ids
// never seen after evacuateUnknownFor.
func (c *Controller) pruneMovesLocked(now time.Time) {
	for id, m := range c.moves {
		if _, ok := c.instances[id]; ok {
			continue
		}
		if m.known || now.Sub(m.at) >= evacuateUnknownFor {
			delete(c.moves, id)
		}
	}
}

// launchedLocked records the event of a launch that moves an instance.
func (c *Controller) launchedLocked(a reconcile.Action, in *instance) {
	m := c.moves[a.Replaces]
	if a.Replaces == "" || m == nil {
		return
	}
	c.events.add(api.Event{Type: "move", Instance: a.Replaces, Release: in.release,
		Reason: fmt.Sprintf("moving %s %s: replacement %s", a.Replaces, m.words(), in.id)})
}

// movedLocked says whether a retire of instance id ends a move.
func (c *Controller) movedLocked(id string) bool {
	_, ok := c.moves[id]
	return ok
}

// retireMoved retires an instance moved off its machine (its replacement
// serves) and records that it stopped.
func (c *Controller) retireMoved(in *instance, reason string) {
	c.retire(in, reason)
	c.mu.Lock()
	rel := in.release
	c.mu.Unlock()
	c.events.add(api.Event{Type: "move", Instance: in.id, Release: rel,
		Reason: fmt.Sprintf("stopped %s: %s", in.id, reason)})
}

// movingLocked is what Status shows of in's move ("" when none).
func (c *Controller) movingLocked(id string) string {
	m := c.moves[id]
	if m == nil {
		return ""
	}
	s := m.words()
	if c.dep.active != nil {
		s += "; after the rollout in progress"
	}
	return s
}
