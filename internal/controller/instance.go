package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/reconcile"
)

// instance is the controller's record of one instance. Fields are guarded
// by Controller.mu.
type instance struct {
	id       string
	release  int
	digest   string
	state    api.State
	reason   string
	since    time.Time // entered state
	launched time.Time // Launch decided
	started  time.Time // process running
	serving  time.Time // first in service; zero if never
	replaces string
	addr     string
	pid      int
	host     string // Running.Host and Zone: where it runs
	zone     string
	healthy  bool   // last health verdict
	health   string // last health detail ("ok", "status 500", ...)
	inPool   bool
	// adopted is set for an instance taken over at start from a host
	// that kept it running (adopt.go), not launched by this run.
	adopted bool
	// ctx ends when the instance is to stop: its launch and monitor
	// goroutine watches it. cancel ends it.
	ctx    context.Context
	cancel context.CancelFunc
	// exited is closed when the host reports the process ended.
	exited chan struct{}
	exit   *Exit
}

func (in *instance) observed() reconcile.Instance {
	return reconcile.Instance{ID: in.id, Release: in.release, State: in.state, Started: in.launched, Replaces: in.replaces}
}

// newInstanceLocked records a pending instance for a Launch action.
func (c *Controller) newInstanceLocked(ctx context.Context, a reconcile.Action) *instance {
	c.seq++
	now := c.now()
	ictx, cancel := context.WithCancel(ctx)
	in := &instance{
		ctx:      ictx,
		cancel:   cancel,
		id:       fmt.Sprintf("%s-v%d-%s", c.cfg.Name, a.Release, instanceSuffix(now, c.seq)),
		release:  a.Release,
		digest:   c.current.Digest,
		launched: now,
		replaces: a.Replaces,
		exited:   make(chan struct{}),
		state:    api.Pending,
		since:    now,
		reason:   a.Reason,
	}
	c.instances[in.id] = in
	c.events.add(api.Event{Type: "state", Instance: in.id, Release: in.release, State: in.state.String(), Reason: a.Reason})
	c.log.Info("instance pending", "instance", in.id, "release", in.release, "reason", a.Reason)
	return in
}

// instanceSuffix makes ids unique across restarts of shoal (a counter
// alone would repeat after a restart and collide with old log files).
func instanceSuffix(now time.Time, seq int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	v := uint64(now.UnixMilli()) % (36 * 36 * 36 * 36 * 36 * 36)
	b := make([]byte, 0, 10)
	for range 6 {
		b = append(b, digits[v%36])
		v /= 36
	}
	return fmt.Sprintf("%s%d", b, seq)
}

// setStateLocked moves in to st with a reason, records an event and logs
// the change once. Moving to the state it is already in is a no-op.
func (c *Controller) setStateLocked(in *instance, st api.State, reason string) {
	if in.state == st {
		return
	}
	from := in.state
	reason = c.env.Redact(reason)
	in.state = st
	in.reason = reason
	in.since = c.now()
	if st == api.InService && in.serving.IsZero() {
		in.serving = in.since
	}
	c.events.add(api.Event{Type: "state", Instance: in.id, Release: in.release, From: from.String(),
		State: st.String(), Reason: reason, Addr: in.addr})
	lvl := "info"
	if st == api.Failed || st == api.Unhealthy {
		lvl = "warn"
	}
	args := []any{"instance", in.id, "release", in.release, "from", from.String(), "to", st.String(), "reason", reason}
	if lvl == "warn" {
		c.log.Warn("instance state", args...)
	} else {
		c.log.Info("instance state", args...)
	}
}

// endLocked records that in's process is gone, forgets it, and updates the
// release's crash-loop state. failed says whether it ended on its own.
func (c *Controller) endLocked(in *instance, st api.State, reason string) {
	c.setStateLocked(in, st, reason)
	if in.cancel != nil {
		in.cancel()
	}
	delete(c.instances, in.id)
	delete(c.rates, in.id)
	// An adopted instance counts for its release's crash loop only once
	// it has served in this run: adoption is no start (adopt.go).
	if st == api.Failed && (!in.adopted || !in.serving.IsZero()) {
		c.backoff[in.release] = c.backoff[in.release].Ended(c.now(), in.launched, !in.serving.IsZero())
	}
}
