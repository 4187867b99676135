package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Adopter is implemented by a Host whose instances outlive the process
// that started them (a fleet: the agents keep running them while the
// server restarts). A controller whose Host is an Adopter calls Adopt once
// at the start of Run, after the active release is chosen and before the
// first launch, and takes the instances returned over instead of starting
// new ones.
type Adopter interface {
	// Adopt returns the instances of app that run now, each once, sorted
	// by id. From then on the host delivers their exits and takes Stop,
	// Logs and Stats calls for them as for instances it started. A partial
	// failure (a host that could not be listed) returns the instances
	// found together with an error naming what was left out. Adopt blocks
	// at most until ctx ends.
	Adopt(ctx context.Context, app string) ([]Adopted, error)
}

// Adopted is one running instance an Adopter hands to the controller.
type Adopted struct {
	ID      string
	Release int
	// Digest is the artifact it runs from.
	Digest  string
	Running Running
	// CPU (cores) and Memory (bytes) are what it declared at its start.
	CPU    float64
	Memory int64
}

// leaveRunning ends Run's hold on the instances left after the loop and
// its workers have ended, without stopping them (Options.LeaveRunning).
func (c *Controller) leaveRunning() {
	c.mu.Lock()
	n := 0
	for _, in := range c.instances {
		in.cancel()
		n++
	}
	if n > 0 {
		c.events.add(api.Event{Type: "shoal", Release: c.current.Version,
			Reason: fmt.Sprintf("stopped; %d instances left running for the next start to adopt", n)})
	}
	c.mu.Unlock()
	c.log.Info("stopped, instances left running", "instances", n)
}

// adoptTimeout bounds the start's wait for an Adopter: its hosts to be
// listed (a fleet waits at most its LostAfter for a host that is joining).
const adoptTimeout = 30 * time.Second

// adopt takes over, before the loop's first decision, the instances that
// an Adopter host runs for the app. With no rollout under way, instances of
// the group's release (with its artifact) are kept up to the desired
// count; during a resumed rollout, instances of either of its releases
// are kept, up to the desired count of each, and the rollout decides
// their fate with fresh observations. Each kept instance enters the table
// as starting and is probed like a new one (keep); the rest enter as
// draining, with the reason, to be stopped (drop). Adoption is not a start:
// the id counter continues past the adopted ids, and the release's crash
// and served records are left alone. A partial failure is logged and
// recorded as an event; the controller starts with what it found. Nothing
// is adopted from a Host that is not an Adopter.
func (c *Controller) adopt(ctx context.Context) (keep, drop []*instance) {
	ad, ok := c.o.Host.(Adopter)
	if !ok {
		return nil, nil
	}
	actx, cancel := context.WithTimeout(ctx, adoptTimeout)
	found, err := ad.Adopt(actx, c.cfg.Name)
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		reason := c.env.Redact(fmt.Sprintf("adoption incomplete, %d instances found: %v", len(found), err))
		c.events.add(api.Event{Type: "shoal", Release: c.current.Version, Reason: reason})
		c.log.Warn("adoption incomplete", "instances", len(found), "error", reason)
	}
	want := map[int]string{c.current.Version: c.current.Digest} // release -> digest
	if d := c.dep.active; d != nil {
		spec := d.r.Spec()
		want = map[int]string{spec.From: d.rels[spec.From].Digest, spec.To: d.rels[spec.To].Digest}
	}
	kept := map[int]int{}
	for _, a := range found {
		if n, ok := seqOf(c.cfg.Name, a.ID); ok {
			c.seq = max(c.seq, n)
		}
		if old := c.instances[a.ID]; old != nil {
			continue // listed twice; the first is taken
		}
		in := c.adoptedLocked(ctx, a)
		digest, wanted := want[a.Release]
		var why string
		switch {
		case !wanted && c.dep.active != nil:
			why = fmt.Sprintf("v%d is neither release of the deploy under way", a.Release)
		case !wanted:
			why = fmt.Sprintf("v%d is not the group's release (v%d)", a.Release, c.current.Version)
		case digest != a.Digest:
			why = fmt.Sprintf("it runs artifact %s, not v%d's %s", short(a.Digest), a.Release, short(digest))
		case kept[a.Release] >= c.group.Desired:
			why = fmt.Sprintf("surplus: %d of v%d wanted", c.group.Desired, a.Release)
		}
		if why != "" {
			c.setStateLocked(in, api.Draining, "adopted, then stopped: "+why)
			in.inPool = true // leaves the pool if it is there (drain ignores an absent target)
			drop = append(drop, in)
			continue
		}
		kept[a.Release]++
		keep = append(keep, in)
	}
	return keep, drop
}

// adoptedLocked records a: in the table, as starting, and as an event.
func (c *Controller) adoptedLocked(ctx context.Context, a Adopted) *instance {
	now := c.now()
	ictx, cancel := context.WithCancel(ctx)
	in := &instance{
		ctx: ictx, cancel: cancel, exited: make(chan struct{}),
		id: a.ID, release: a.Release, digest: a.Digest, adopted: true,
		launched: a.Running.Started, started: a.Running.Started,
		addr: a.Running.Addr, pid: a.Running.PID, host: a.Running.Host, zone: a.Running.Zone,
		state: api.Starting, since: now,
		reason: fmt.Sprintf("adopted instance %s (v%d) on host %s, pid %d, serving on %s", a.ID, a.Release, a.Running.Host, a.Running.PID, a.Running.Addr),
	}
	if in.launched.IsZero() {
		in.launched = now
	}
	c.instances[in.id] = in
	c.events.add(api.Event{Type: "state", Instance: in.id, Release: in.release, State: in.state.String(),
		Reason: in.reason, Addr: in.addr})
	c.log.Info("instance adopted", "instance", in.id, "release", in.release, "host", a.Running.Host, "pid", a.Running.PID, "addr", a.Running.Addr)
	return in
}

// startAdopted starts the workers of adopt's result: each kept instance
// is probed until healthy and then served and monitored (admit), each
// dropped one drained and stopped.
func (c *Controller) startAdopted(workers *sync.WaitGroup, keep, drop []*instance) {
	for _, in := range keep {
		workers.Go(func() { c.admit(in) })
	}
	for _, in := range drop {
		workers.Go(func() {
			c.mu.Lock()
			reason := in.reason
			c.mu.Unlock()
			c.retire(in, reason)
		})
	}
}

// adoptingLocked reports whether an adopted instance still awaits its
// first health verdict. A resumed rollout waits for it: the rollout
// drains at once any instance of its old release that is not in service,
// which an adopted one is until its probes pass.
func (c *Controller) adoptingLocked() bool {
	for _, in := range c.instances {
		if in.adopted && in.state == api.Starting {
			return true
		}
	}
	return false
}

// seqOf returns the counter in an instance id made by newInstanceLocked
// ("web-v3-<6 characters><seq>"); ok is false for another shape.
func seqOf(app, id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, app+"-v")
	if !ok {
		return 0, false
	}
	i := strings.IndexByte(rest, '-')
	if i < 0 || len(rest) < i+1+7 {
		return 0, false
	}
	n, err := strconv.Atoi(rest[i+1+6:])
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
