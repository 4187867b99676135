package controller

import (
	"cmp"
	"slices"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/autoscale"
)

// autoscaleSample observes the group's in-service instances at now: the
// balancer's per-target request and in-flight counters, the CPU time of
// each instance's processes from its host (/proc on a LocalHost), and the
// pool's latency histogram.
//
// The histogram leaves out WebSocket tunnels and held-open exchanges (long
// polls, streams, server-sent events: lb.RequestRecord.Held), whose
// durations the app chooses; with them, long-polling clients alone would
// drive a latency policy to group.max.
//
// The balancer measures latency per pool, not per target, so the pool's
// histogram rides on one instance of the sample, the one longest in
// service: the window then counts every request of the pool once, those
// of instances still warming up included. When that instance leaves, one
// interval of latency is lost while the next one takes over.
func (c *Controller) autoscaleSample(now time.Time) autoscale.Sample {
	targets := map[string]struct {
		requests uint64
		inFlight int
	}{}
	for _, ts := range c.o.Pool.Status().Targets {
		targets[ts.Addr] = struct {
			requests uint64
			inFlight int
		}{uint64(max(ts.Requests, 0)), int(ts.InFlight)}
	}
	type member struct {
		id, addr string
		serving  time.Time
	}
	var members []member
	c.mu.Lock()
	for _, in := range c.instances {
		if in.state == api.InService && in.inPool && !in.serving.IsZero() {
			members = append(members, member{in.id, in.addr, in.serving})
		}
	}
	c.mu.Unlock()
	slices.SortFunc(members, func(a, b member) int {
		return cmp.Or(a.serving.Compare(b.serving), cmp.Compare(a.id, b.id))
	})

	s := autoscale.Sample{Time: now}
	for _, m := range members {
		t, ok := targets[m.addr]
		if !ok {
			continue // left the pool since
		}
		is := autoscale.InstanceSample{ID: m.id, InService: m.serving, Requests: t.requests, InFlight: t.inFlight}
		if st, err := c.o.Host.Stats(m.id); err == nil {
			is.CPUSeconds, is.HasCPU = st.CPUSeconds, true
		}
		s.Instances = append(s.Instances, is)
	}
	if c.o.Latency != nil && len(s.Instances) > 0 {
		bounds, counts := c.o.Latency()
		if len(bounds) > 0 && len(counts) == len(bounds)+1 {
			s.Instances[0].Latency = autoscale.Histogram{Bounds: bounds, Counts: counts}
		}
	}
	return s
}
