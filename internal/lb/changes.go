package lb

import (
	"slices"
	"sync"
)

// changes is the balancer's one change notification: a channel closed at
// the next change of the routes, the pools or any pool's targets, then
// replaced. The zero value is ready.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns the channel the next notify closes.
func (c *changes) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// notify wakes every waiter. It never blocks: a pool calls it from the
// proxy's path (ejections) through pool.Options.OnChange.
func (c *changes) notify() {
	c.mu.Lock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
	c.mu.Unlock()
}

// Changed returns a channel that is closed at the next change of the
// balancer's routes, pools (added, removed, reconfigured by Reload) or any
// pool's targets (added, removed, a weight, a state: every change that
// pool.Options.OnChange reports, whoever made it: the controller, the
// admin API, a health checker, the proxy's passive ejection). It says
// that something changed, not what: read Config and each Pool's Status
// after it fires, then call Changed again before reading, so that no
// change is missed. Safe for concurrent use; costs nothing while no one
// waits.
func (b *Balancer) Changed() <-chan struct{} { return b.changes.wait() }

// Config returns a copy of the configuration in use: listeners, routes
// and pools with their settings as last set by New, Reload, AddPool,
// RemovePool, SetRoutes and SetMaintenance. A pool's Targets are those
// of its configuration, not its members now (a controller changes those
// through the Pool: read them with Pool(name).Status()).
func (b *Balancer) Config() Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.cfg
	c.Listeners = slices.Clone(c.Listeners)
	c.Routes = slices.Clone(c.Routes)
	c.Pools = slices.Clone(c.Pools)
	return c
}
