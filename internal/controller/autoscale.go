package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/autoscale"
	"github.com/shoal-dev/shoal/internal/reconcile"
)

// ErrAutoscaleDisabled is returned by PauseAutoscale when shoal.yaml has no
// autoscale section.
var ErrAutoscaleDisabled = errors.New("auto scaling is not configured (no autoscale section in shoal.yaml)")

// errDesiredMoved means the desired count changed (shoal scale) between a
// decision and its application; the next evaluation decides again.
var errDesiredMoved = errors.New("desired count changed meanwhile")

// autoscaler is the controller's side of auto scaling: the pure strategy
// (autoscale.Scaler), its metrics window and what the last evaluation
// said. The loop (runAutoscale) is the only caller of the Scaler's
// deciding methods; mu guards everything for Status and manual changes.
// Lock order: Controller.mu before autoscaler.mu, never the reverse.
type autoscaler struct {
	mu      sync.Mutex
	scaler  *autoscale.Scaler // nil when not configured
	window  *autoscale.Window
	last    autoscale.Decision // the last evaluation
	change  *autoscale.Decision
	state   autoscale.State // state of the last hold event
	heldDir string          // would-be direction of the last hold event
	manual  bool            // shoal scale since the last evaluation
	manualN int
	manualT time.Time
	metrics *autoscaleMetrics
}

// initScaling prepares the scaling state once the group is known (after
// prepare): the first start launches every instance at once, and the
// autoscaler starts paused if it was paused before a restart.
func (c *Controller) initScaling() error {
	c.mu.Lock()
	c.noteDesiredLocked(0, c.group.Desired)
	paused := c.group.AutoscalePaused
	c.mu.Unlock()
	if !c.cfg.AutoscaleEnabled() {
		return nil
	}
	s, err := autoscale.NewScaler(c.cfg.AutoscaleConfig())
	if err != nil {
		return fmt.Errorf("autoscale: %w", err)
	}
	if paused {
		s.Pause()
	}
	c.as.mu.Lock()
	c.as.scaler = s
	c.as.window = autoscale.NewWindow(s.Config().Window)
	c.as.mu.Unlock()
	return nil
}

// noteDesiredLocked records a change of the desired count from old to n:
// instances added by a scale-out launch all at once (reconcile.Desired.Grow);
// a scale-in cancels growth not yet launched.
func (c *Controller) noteDesiredLocked(old, n int) {
	if n > old {
		c.grow += n - old
	} else {
		c.grow = max(0, c.grow-(old-n))
	}
}

// consumeGrowthLocked counts the launches of plan against the growth
// still to launch.
func (c *Controller) consumeGrowthLocked(plan reconcile.Plan) {
	for _, a := range plan.Actions {
		if a.Kind == reconcile.Launch && c.grow > 0 {
			c.grow--
		}
	}
}

// noteManualLocked tells the autoscaler about a count set by shoal scale,
// so that its scale-in stabilization starts over from it.
func (c *Controller) noteManualLocked(n int) {
	c.as.mu.Lock()
	c.as.manual, c.as.manualN, c.as.manualT = true, n, c.now()
	c.as.mu.Unlock()
}

// runAutoscale evaluates the policies and the schedules every interval
// until ctx ends. It returns at once when auto scaling is not configured.
func (c *Controller) runAutoscale(ctx context.Context) {
	c.as.mu.Lock()
	s := c.as.scaler
	c.as.mu.Unlock()
	if s == nil {
		return
	}
	tick := time.NewTicker(s.Config().Interval)
	defer tick.Stop()
	last := c.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := c.now()
		c.autoscaleTick(ctx, last, now)
		last = now
	}
}

// autoscaleTick is one evaluation at now; last is the previous one's time.
func (c *Controller) autoscaleTick(ctx context.Context, last, now time.Time) {
	c.mu.Lock()
	none := c.current.Version == 0
	c.mu.Unlock()
	if none {
		return // no release to scale before the first deploy
	}
	c.runSchedules(last, now)
	sample := c.autoscaleSample(now)

	rolling := c.Rollout() != nil
	c.mu.Lock()
	current := c.group.Desired
	c.mu.Unlock()

	c.as.mu.Lock()
	s := c.as.scaler
	if c.as.manual {
		c.as.manual = false
		s.SetDesired(c.as.manualT, c.as.manualN)
	}
	if err := c.as.window.Add(sample); err != nil {
		c.log.Warn("autoscale sample", "error", err)
	}
	wasPaused := s.Paused()
	if rolling {
		s.Pause() // values are still measured; nothing changes during a rollout
	}
	d := s.Decide(now, current, c.as.window)
	if rolling && !wasPaused {
		s.Resume()
		d.Held = "held during a rollout"
	}
	c.as.last = d
	c.as.metrics.update(d)
	event := c.holdEventLocked(d)
	c.as.mu.Unlock()

	if d.Desired != current {
		err := c.setDesired(ctx, current, d.Desired, func(*api.Group) {}, api.Event{Type: "autoscale", Reason: d.Reason})
		if err != nil {
			if !errors.Is(err, errDesiredMoved) {
				c.log.Warn("autoscale", "error", err)
			}
			return
		}
		c.as.mu.Lock()
		dc := d
		c.as.change = &dc
		c.as.state, c.as.heldDir = d.State, ""
		c.as.mu.Unlock()
		c.log.Info("autoscale", "from", current, "to", d.Desired, "reason", d.Reason)
		return
	}
	if event != "" {
		c.events.add(api.Event{Type: "autoscale", Reason: event})
	}
}

// holdEventLocked returns the event text for a decision that holds, only
// when it differs in kind from the last one recorded (state, or the way
// it would scale): hold reasons carry countdowns and values that change
// every evaluation.
func (c *Controller) holdEventLocked(d autoscale.Decision) string {
	if d.Desired != d.Current {
		return ""
	}
	dir := ""
	for _, pv := range d.PerPolicy {
		switch {
		case pv.Wants > d.Current:
			dir = "out"
		case pv.Wants < d.Current && dir == "":
			dir = "in"
		}
	}
	if d.State == c.as.state && dir == c.as.heldDir {
		return ""
	}
	c.as.state, c.as.heldDir = d.State, dir
	return fmt.Sprintf("%s: %s", d.State, d.Held)
}

// runSchedules applies the scheduled actions due in (last, now].
func (c *Controller) runSchedules(last, now time.Time) {
	c.as.mu.Lock()
	actions := c.as.scaler.Due(last, now)
	c.as.mu.Unlock()
	for _, a := range actions {
		c.mu.Lock()
		current := c.group.Desired
		c.mu.Unlock()
		c.as.mu.Lock()
		n, err := c.as.scaler.ApplyAction(now, a, current)
		lo, hi := c.as.scaler.Limits()
		c.as.mu.Unlock()
		if err != nil {
			c.events.add(api.Event{Type: "autoscale", Reason: err.Error()})
			c.log.Warn("autoscale schedule", "error", err)
			continue
		}
		reason := fmt.Sprintf("schedule %q: min %d, max %d; desired %d -> %d", a.Name, lo, hi, current, n)
		err = c.setDesired(context.Background(), current, n, func(g *api.Group) { g.Min, g.Max = lo, hi },
			api.Event{Type: "autoscale", Reason: reason})
		if err != nil {
			c.log.Warn("autoscale schedule", "schedule", a.Name, "error", err)
			continue
		}
		c.log.Info("autoscale schedule", "schedule", a.Name, "min", lo, "max", hi, "from", current, "to", n)
	}
}

// setDesired stores the desired count n (and what edit changes) if the
// desired count is still from, then records ev and applies the change, so
// that ev comes before the launches and drains it causes. It returns
// errDesiredMoved when the count changed meanwhile.
func (c *Controller) setDesired(ctx context.Context, from, n int, edit func(*api.Group), ev api.Event) error {
	if err := c.takeGroupWrite(ctx); err != nil {
		return err
	}
	defer c.giveGroupWrite()
	g, err := c.o.Writer.UpdateGroup(c.cfg.Name, func(g *api.Group) error {
		if g.Desired != from {
			return errDesiredMoved
		}
		edit(g)
		g.Desired = n
		return nil
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.group.Desired != from {
		c.mu.Unlock()
		return errDesiredMoved
	}
	c.group.Min, c.group.Max, c.group.Desired = g.Min, g.Max, g.Desired
	c.noteDesiredLocked(from, n)
	c.events.add(ev)
	c.mu.Unlock()
	c.poke()
	return nil
}

// PauseAutoscale pauses (true) or resumes (false) auto scaling. The state
// is stored, so it survives a restart. Policies are still evaluated and
// shown while paused; shoal scale still works. It returns
// ErrAutoscaleDisabled when auto scaling is not configured.
func (c *Controller) PauseAutoscale(paused bool) error {
	c.as.mu.Lock()
	s := c.as.scaler
	c.as.mu.Unlock()
	if s == nil {
		return ErrAutoscaleDisabled
	}
	g, err := c.o.Writer.UpdateGroup(c.cfg.Name, func(g *api.Group) error {
		g.AutoscalePaused = paused
		return nil
	})
	if err != nil {
		return fmt.Errorf("pause autoscale: %w", err)
	}
	c.mu.Lock()
	c.group.AutoscalePaused = g.AutoscalePaused
	c.mu.Unlock()
	c.as.mu.Lock()
	changed := s.Paused() != paused
	if paused {
		s.Pause()
	} else {
		s.Resume()
	}
	c.as.mu.Unlock()
	if changed {
		what := "resumed"
		if paused {
			what = "paused"
		}
		c.events.add(api.Event{Type: "autoscale", Reason: "auto scaling " + what + " (shoal autoscale)"})
		c.log.Info("autoscale " + what)
	}
	return nil
}
