package lb

import (
	"context"
	"net/http"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
)

// healthRun is the active checker of one pool while the balancer runs.
type healthRun struct {
	c      *health.Checker
	cancel context.CancelFunc
}

// startHealthLocked starts active checks for a pool with a Health spec.
// Verdicts go to pool.SetHealth (fail open when none is healthy is the
// pool's business). The checker follows the pool's membership: targets
// added or removed through the pool directly (admin API, controller) are
// picked up at once by AddTarget/RemoveTarget and at every interval
// otherwise. b.mu must be held.
func (b *Balancer) startHealthLocked(pe *poolEntry) {
	if pe.cfg.Health == nil || pe.health != nil || b.stopping || !b.running {
		return
	}
	p := pe.p
	c := health.New(*pe.cfg.Health, func(r health.Result) {
		p.SetHealth(r.Addr, r.Healthy, r.Reason)
	}, health.WithLogger(b.log.With("pool", pe.cfg.Name)), health.WithOnPass(func(addr string, started time.Time) {
		// A target that passes its check again is back from a passive
		// ejection (the ejection ends; HAProxy's checks do the same).
		p.ProbePassed(addr, started)
	}), health.WithClient(probeClient(pe)))
	syncHealth(c, p)
	ctx, cancel := context.WithCancel(b.bgCtx)
	pe.health = &healthRun{c: c, cancel: cancel}
	interval := c.Spec().Interval
	b.bg.Add(2)
	go func() {
		defer b.bg.Done()
		c.Run(ctx)
	}()
	go func() {
		defer b.bg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				syncHealth(c, p)
			}
		}
	}()
}

// probeClient is the health probes' client of a pool whose targets
// speak HTTP/2 only (h2c, h2) or TLS: a GET over the pool's own
// transport (its TLS settings, verification and sessions included), no
// redirects followed, like the default probe. Nil for plain HTTP/1.1
// pools, whose probes open a connection each (health.NewProber).
func probeClient(pe *poolEntry) *http.Client {
	if pe.fast() {
		return nil
	}
	var rt http.RoundTripper = pe.tr
	if pe.tls != nil {
		rt = schemeTransport{pe.tr}
	}
	return &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// stopHealthLocked stops a pool's checker; its goroutines end soon after
// and Run waits for them. b.mu must be held.
func (b *Balancer) stopHealthLocked(pe *poolEntry) {
	if pe.health != nil {
		pe.health.cancel()
		pe.health = nil
	}
}

// syncHealth makes the checker's targets the pool's non-draining ones.
func syncHealth(c *health.Checker, p *pool.Pool) {
	want := map[string]*pool.Target{}
	for _, t := range p.Targets() {
		if t.State() != pool.StateDraining {
			want[t.Addr()] = t
		}
	}
	have := map[string]bool{}
	for _, st := range c.Statuses() {
		have[st.Addr] = true
		if want[st.Addr] == nil {
			c.Remove(st.Addr)
		}
	}
	for addr, t := range want {
		if !have[addr] {
			c.Add(addr, health.TargetOpts{InitiallyHealthy: t.State() != pool.StateUnhealthy})
		}
	}
}

// syncHealthOf re-syncs the checker of the named pool, if any.
func (b *Balancer) syncHealthOf(name string) {
	b.mu.Lock()
	pe := b.pools[name]
	var c *health.Checker
	if pe != nil && pe.health != nil {
		c = pe.health.c
	}
	b.mu.Unlock()
	if c != nil {
		syncHealth(c, pe.p)
	}
}
