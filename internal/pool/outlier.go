package pool

import (
	"fmt"
	"log/slog"
	"time"
)

// eject is called by End when t reaches Outlier.ConsecutiveFailures. It
// ejects t for BaseEjection x n (n counting this ejection, capped at
// MaxEjection) unless t is not healthy or the ejection would put more than
// MaxEjectedPercent of the non-draining targets out at once.
func (p *Pool) eject(t *Target) {
	p.mu.Lock()
	defer p.unlock()
	defer t.failures.Store(0)
	now := p.now()
	p.refreshLocked(now)
	if t.state != StateHealthy || p.byAddr[t.addr] != t {
		return
	}
	total, ejected := 0, 0
	for _, x := range p.targets {
		switch x.state {
		case StateDraining:
			continue
		case StateEjected:
			ejected++
		}
		total++
	}
	o := p.outlier
	if (ejected+1)*100 > o.MaxEjectedPercent*total {
		p.logLocked(slog.LevelWarn, "not ejecting target: too many ejected", "target", t.addr,
			"ejected", ejected, "targets", total, "max_ejected_percent", o.MaxEjectedPercent)
		return
	}
	// Forgive old ejections once the target has served well for a while.
	if t.ejectCount > 0 && now.Sub(t.lastReturn) >= o.MaxEjection {
		t.ejectCount = 0
	}
	t.ejectCount++
	d := o.BaseEjection * time.Duration(t.ejectCount)
	if d > o.MaxEjection || d/time.Duration(t.ejectCount) != o.BaseEjection {
		d = o.MaxEjection
	}
	t.ejectedUntil, t.ejectedAt = now.Add(d), now
	t.ejections.Add(1)
	if p.transitionLocked(t, now, fmt.Sprintf("ejected after %d consecutive failures for %s", o.ConsecutiveFailures, d)) {
		p.rebuildLocked(now)
	}
}

// ProbePassed records an active health probe of addr that started at
// started and passed. A passive ejection that began before the probe
// started ends at once (reason "ejection ended: health check passed"):
// the target answers its health check again, so it does not sit out the
// rest of its ejection; its backoff multiplier is kept. A probe that
// started before the ejection proves nothing about it. It returns
// ErrNotFound for an unknown address.
func (p *Pool) ProbePassed(addr string, started time.Time) error {
	p.mu.Lock()
	defer p.unlock()
	t := p.byAddr[addr]
	if t == nil {
		return fmt.Errorf("probe of %s: %w", addr, ErrNotFound)
	}
	now := p.now()
	if !now.Before(t.ejectedUntil) || started.Before(t.ejectedAt) {
		return nil
	}
	t.ejectedUntil = now
	if p.transitionLocked(t, now, "ejection ended: health check passed") {
		p.rebuildLocked(now)
	}
	return nil
}
