package controller

import (
	"sort"
	"time"
)

// Status is a point-in-time view of the group, safe to encode as JSON.
type Status struct {
	App     string `json:"app"`
	Host    string `json:"host"`
	Release int    `json:"release"`
	Digest  string `json:"digest"`
	Min     int    `json:"min"`
	Max     int    `json:"max"`
	Desired int    `json:"desired"`
	// InService counts instances in service.
	InService int `json:"in_service"`
	// Backoff is the current crash-loop message, if launches are held.
	Backoff string `json:"backoff,omitempty"`
	// Crash is the last crash of an instance of the current release while
	// that release is crashing in a row (until one instance is stable).
	Crash     *Crash           `json:"crash,omitempty"`
	Instances []InstanceStatus `json:"instances"`
	// Events is set while events cannot be written to the store (a full
	// disk): how many wait, and the last error (events.go).
	Events string `json:"events_problem,omitempty"`
}

// InstanceStatus is one instance in Status.
type InstanceStatus struct {
	ID      string    `json:"id"`
	Release int       `json:"release"`
	State   string    `json:"state"`
	Reason  string    `json:"reason"`
	Since   time.Time `json:"since"`
	Healthy bool      `json:"healthy"`
	Health  string    `json:"health"`
	Addr    string    `json:"addr,omitempty"`
	PID     int       `json:"pid,omitempty"`
	// Started is when the process started; zero while pending.
	Started time.Time `json:"started,omitzero"`
	// UptimeSeconds is the time since Started.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// RequestsPerSecond is measured at the balancer over the last second.
	RequestsPerSecond float64 `json:"requests_per_second"`
	Replaces          string  `json:"replaces,omitempty"`
}

// Status returns the group and its instances, oldest first. It never
// blocks on I/O.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	st := Status{
		App: c.cfg.Name, Host: c.o.Host.Name(), Release: c.current.Version, Digest: c.current.Digest,
		Min: c.group.Min, Max: c.group.Max, Desired: c.group.Desired, Backoff: c.blocked,
		Instances: []InstanceStatus{},
		Events:    c.events.problem(),
	}
	if cr, ok := c.crashes[c.current.Version]; ok {
		if n := c.backoff[c.current.Version].Failures; n > 0 {
			cr.InARow = n
			st.Crash = &cr
		}
	}
	for _, in := range c.instances {
		is := InstanceStatus{
			ID: in.id, Release: in.release, State: in.state.String(), Reason: in.reason, Since: in.since,
			Healthy: in.healthy, Health: in.health, Addr: in.addr, PID: in.pid, Started: in.started,
			RequestsPerSecond: c.rates[in.id].perSec, Replaces: in.replaces,
		}
		if !in.started.IsZero() {
			is.UptimeSeconds = now.Sub(in.started).Seconds()
		}
		if is.Health == "" {
			is.Health = "unknown"
		}
		if in.state.String() == "in_service" {
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
