package pool

import (
	"fmt"
	"log/slog"
	"time"
)

// Drain takes a target out of rotation at once (no new picks, sticky ones
// included) and returns a channel that is closed when its in-flight count
// reaches zero. If timeout passes first, Target.Context is canceled with
// cause ErrDrainDeadline so the proxy ends the remaining requests and
// tunnels; the channel closes when they have called End. A timeout <= 0
// cancels at once. Draining a draining target returns the same channel and
// keeps the first deadline. A drained target stays in the pool (as
// draining) until Remove. It returns ErrNotFound for an unknown address.
//
// A request picked concurrently with Drain may Begin after the channel has
// closed; idle means the count was zero at some moment after Drain began.
func (p *Pool) Drain(addr string, timeout time.Duration) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.unlock()
	t := p.byAddr[addr]
	if t == nil {
		return nil, fmt.Errorf("drain %s: %w", addr, ErrNotFound)
	}
	return p.drainLocked(t, timeout, "draining"), nil
}

// Remove drains a target with Options.DrainTimeout and deletes it from the
// pool once it is idle; the returned channel is closed after the deletion.
// Removing a target that was already drained deletes it at once. It returns
// ErrNotFound for an unknown address.
func (p *Pool) Remove(addr string) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.unlock()
	t := p.byAddr[addr]
	if t == nil {
		return nil, fmt.Errorf("remove %s: %w", addr, ErrNotFound)
	}
	if t.drain != nil {
		t.drain.removing = true
		if t.drain.closed {
			p.deleteLocked(t)
		}
		return t.drain.idle, nil
	}
	t.drain = &drainState{idle: make(chan struct{}), removing: true}
	return p.drainLocked(t, p.drainTO, "removing"), nil
}

// drainLocked starts draining t unless it already is.
func (p *Pool) drainLocked(t *Target, timeout time.Duration, reason string) chan struct{} {
	if t.drain != nil && t.draining.Load() {
		return t.drain.idle
	}
	if t.drain == nil {
		t.drain = &drainState{idle: make(chan struct{})}
	}
	d := t.drain
	// Publish draining before reading the in-flight count; End decrements
	// before reading draining, so one of the two sees the other.
	t.draining.Store(true)
	now := p.now()
	if p.transitionLocked(t, now, reason) {
		p.rebuildLocked(now)
	}
	if t.inflight.Load() <= 0 {
		p.finishDrainLocked(t)
		return d.idle
	}
	if timeout <= 0 {
		p.logLocked(slog.LevelWarn, deadlineMsg, p.deadlineArgs(t)...)
		t.life.Load().cancel(ErrDrainDeadline)
	} else {
		d.timer = time.AfterFunc(timeout, func() { p.deadline(t) })
	}
	return d.idle
}

// deadline cancels t's context because its drain deadline passed (from
// the drain's timer, without the lock).
func (p *Pool) deadline(t *Target) {
	p.log.Warn(deadlineMsg, p.deadlineArgs(t)...)
	t.life.Load().cancel(ErrDrainDeadline)
}

const deadlineMsg = "drain deadline reached, closing streams"

func (p *Pool) deadlineArgs(t *Target) []any {
	return []any{"target", t.addr, "in_flight", t.inflight.Load()}
}

// finishDrainLocked closes t's idle channel once, stopping the deadline
// and deleting t first when it is being removed.
func (p *Pool) finishDrainLocked(t *Target) {
	d := t.drain
	if d == nil || d.closed {
		return
	}
	d.closed = true
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.removing {
		p.deleteLocked(t)
	}
	close(d.idle)
}

// Undrain puts a drained target back in rotation: the drain ends (a
// deadline not yet reached is disarmed, and the drain's channel is closed
// so that callers waiting on it return), a target whose Context was
// canceled by the drain deadline gets a new one, and the state is derived
// again from the health verdict and any passive ejection (a healthy target
// ramps up again under slow start). A target that is not draining is left
// as it is. A target being removed (Remove, or a reload that dropped it)
// cannot be put back: Undrain returns ErrRemoving, and the target must be
// added again once it is gone. It returns ErrNotFound for an unknown
// address.
func (p *Pool) Undrain(addr string) error {
	p.mu.Lock()
	defer p.unlock()
	t := p.byAddr[addr]
	if t == nil {
		return fmt.Errorf("undrain %s: %w", addr, ErrNotFound)
	}
	d := t.drain
	if d == nil {
		return nil
	}
	if d.removing {
		return fmt.Errorf("undrain %s: %w", addr, ErrRemoving)
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	if !d.closed {
		d.closed = true
		close(d.idle)
	}
	t.drain = nil
	t.draining.Store(false)
	if t.life.Load().ctx.Err() != nil {
		t.life.Store(newTargetLife())
	}
	now := p.now()
	if p.transitionLocked(t, now, "undrained") {
		p.rebuildLocked(now)
	}
	return nil
}
