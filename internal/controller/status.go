package controller

import (
	"sort"

	"github.com/shoal-dev/shoal/internal/api"
)

// Status returns the group and its instances, oldest first (Maintenance
// is left false: the balancer knows it). It never blocks on I/O.
func (c *Controller) Status() api.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	st := api.Status{
		App: c.cfg.Name, Host: c.o.Host.Name(), Release: c.current.Version, Digest: c.current.Digest,
		Min: c.group.Min, Max: c.group.Max, Desired: c.group.Desired, Backoff: c.blocked,
		Instances: []api.InstanceStatus{},
		Events:    c.events.problem(),
	}
	if cr, ok := c.crashes[c.current.Version]; ok {
		if n := c.backoff[c.current.Version].Failures; n > 0 {
			cr.InARow = n
			st.Crash = &cr
		}
	}
	for _, in := range c.instances {
		is := api.InstanceStatus{
			ID: in.id, Release: in.release, State: in.state, Reason: in.reason, Since: in.since,
			Healthy: in.healthy, Health: in.health, Addr: in.addr, PID: in.pid, Started: in.started,
			Host: in.host, Zone: in.zone,
			RequestsPerSecond: c.rates[in.id].perSec, Replaces: in.replaces, Moving: c.movingLocked(in.id),
		}
		if !in.started.IsZero() {
			is.UptimeSeconds = now.Sub(in.started).Seconds()
		}
		if is.Health == "" {
			is.Health = "unknown"
		}
		if in.state == api.InService {
			st.InService++
		}
		st.Instances = append(st.Instances, is)
	}
	sort.Slice(st.Instances, func(i, j int) bool {
		a, b := st.Instances[i], st.Instances[j]
		if !a.Started.Equal(b.Started) {
			return a.Started.Before(b.Started)
		}
		return a.ID < b.ID
	})
	return st
}
