package lb

import (
	"fmt"
	"sort"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
)

// The balancer's status is the one vocabulary's wire type (package api);
// these names keep the balancer's callers reading as before.
type (
	// Status is a point-in-time view of the balancer, shaped for JSON.
	Status = api.LBStatus
	// ListenerStatus describes one listener.
	ListenerStatus = api.ListenerStatus
	// RouteStatus describes one route.
	RouteStatus = api.RouteStatus
	// PoolStatus is pool.Status with JSON names and the active health view.
	PoolStatus = api.PoolStatus
	// TargetStatus is one target's state and the reason for it.
	TargetStatus = api.TargetStatus
)

// Status returns the current listeners, routes, pools with their targets,
// and whether maintenance mode is on.
func (b *Balancer) Status() Status {
	b.mu.Lock()
	cfg := b.cfg
	var ls []ListenerStatus
	for _, lc := range cfg.Listeners {
		addr := lc.Addr
		if l := b.listeners[lc.Name]; l != nil && l.raw != nil {
			addr = l.raw.Addr().String()
		}
		ls = append(ls, ListenerStatus{Name: lc.Name, Addr: addr, TLS: len(lc.TLS) > 0 || lc.Managed, Routes: lc.Routes, Timing: b.metrics.listenerTiming(lc.Name)})
	}
	type pe struct {
		name string
		p    *pool.Pool
		algo string
		c    *health.Checker
	}
	var pes []pe
	for name, e := range b.pools {
		var c *health.Checker
		if e.health != nil {
			c = e.health.c
		}
		pes = append(pes, pe{name, e.p, e.cfg.Algorithm.String(), c})
	}
	b.mu.Unlock()

	st := Status{Listeners: ls, Maintenance: b.maint.Load() != nil, WebSockets: b.tunnels.count()}
	for _, r := range cfg.Routes {
		st.Routes = append(st.Routes, RouteStatus{Name: r.Name, Host: r.Host, PathPrefix: r.PathPrefix, Pool: r.Pool, Timing: b.metrics.routeTiming(r.Name, r.Pool)})
	}
	sort.Slice(pes, func(i, j int) bool { return pes[i].name < pes[j].name })
	for _, e := range pes {
		ps := e.p.Status()
		out := PoolStatus{Name: ps.Name, Algorithm: e.algo, Healthy: ps.Healthy, FailOpen: ps.FailOpen, Targets: []TargetStatus{}}
		for _, t := range ps.Targets {
			ts := TargetStatus{
				Addr: t.Addr, State: t.State, Reason: t.Reason, Since: t.Since,
				Weight: t.Weight, EffectiveWeight: t.EffectiveWeight, InFlight: t.InFlight,
				LatencyMS: float64(t.EWMA.Microseconds()) / 1000, Ejections: t.Ejections, Requests: t.Requests,
			}
			if e.c != nil {
				if hs, ok := e.c.Status(t.Addr); ok {
					ts.Check, ts.CheckReason = hs.State.String(), hs.Reason
				}
			}
			out.Targets = append(out.Targets, ts)
		}
		st.Pools = append(st.Pools, out)
	}
	return st
}

// AddTarget adds a target to a pool and, with active checks, starts
// checking it at once. Errors wrap pool.ErrNotFound (unknown pool) or the
// pool's own (pool.ErrExists, bad weight).
func (b *Balancer) AddTarget(poolName string, t pool.TargetSpec) error {
	p, ok := b.Pool(poolName)
	if !ok {
		return fmt.Errorf("pool %s: %w", poolName, pool.ErrNotFound)
	}
	if err := p.Add(t); err != nil {
		return err
	}
	b.syncHealthOf(poolName)
	return nil
}

// RemoveTarget drains a target (up to the pool's drain timeout) and then
// deletes it; the channel closes once it is gone. Active checks of it
// stop at once.
func (b *Balancer) RemoveTarget(poolName, addr string) (<-chan struct{}, error) {
	p, ok := b.Pool(poolName)
	if !ok {
		return nil, fmt.Errorf("pool %s: %w", poolName, pool.ErrNotFound)
	}
	ch, err := p.Remove(addr)
	if err != nil {
		return nil, err
	}
	b.syncHealthOf(poolName)
	return ch, nil
}

// DrainTarget takes a target out of rotation and returns a channel closed
// when it is idle; timeout <= 0 uses the pool's drain timeout.
func (b *Balancer) DrainTarget(poolName, addr string, timeout time.Duration) (<-chan struct{}, error) {
	b.mu.Lock()
	pe := b.pools[poolName]
	b.mu.Unlock()
	if pe == nil {
		return nil, fmt.Errorf("pool %s: %w", poolName, pool.ErrNotFound)
	}
	if timeout <= 0 {
		timeout = pe.cfg.DrainTimeout
	}
	ch, err := pe.p.Drain(addr, timeout)
	if err != nil {
		return nil, err
	}
	b.syncHealthOf(poolName)
	return ch, nil
}

// UndrainTarget puts a drained target back in rotation (see
// pool.Pool.Undrain) and under the pool's active health checks again.
func (b *Balancer) UndrainTarget(poolName, addr string) error {
	b.mu.Lock()
	pe := b.pools[poolName]
	b.mu.Unlock()
	if pe == nil {
		return fmt.Errorf("pool %s: %w", poolName, pool.ErrNotFound)
	}
	if err := pe.p.Undrain(addr); err != nil {
		return err
	}
	b.syncHealthOf(poolName)
	return nil
}
