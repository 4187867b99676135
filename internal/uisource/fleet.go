package uisource

import (
	"context"
	"fmt"
	"slices"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/dashboard"
)

// fleetEvents is how many host events the hosts card asks for.
const fleetEvents = 10

// Fleet implements dashboard.Source: the hosts of Options.Hosts and the
// newest host events of Options.HostEvents, newest first; nil without
// Hosts.
func (s *Source) Fleet(ctx context.Context) (*dashboard.Fleet, error) {
	if s.o.Hosts == nil {
		return nil, nil
	}
	hosts := s.o.Hosts()
	f := &dashboard.Fleet{Hosts: make([]dashboard.Host, 0, len(hosts)), Balancers: []dashboard.BalancerNode{}, Events: []dashboard.Event{}}
	for _, h := range hosts {
		if b := h.Balancer; h.Role == api.RoleLB && b != nil {
			f.Balancers = append(f.Balancers, dashboard.BalancerNode{Name: h.Name, Addr: b.Addr, State: string(h.State), Reason: h.Reason,
				Applied: b.Applied, Version: b.ServerVersion, LastSeen: h.LastHeartbeat})
			continue
		}
		f.Hosts = append(f.Hosts, dashboard.Host{Name: h.Name, Region: h.Region, Zone: h.Zone, State: string(h.State), Reason: h.Reason,
			CPU: h.CPU, UsedCPU: h.UsedCPU, Memory: h.MemoryBytes, UsedMemory: h.UsedMemoryBytes,
			Instances: h.Instances, LastHeartbeat: h.LastHeartbeat})
	}
	if s.o.HostEvents == nil {
		return f, nil
	}
	evs, err := s.o.HostEvents(0, fleetEvents)
	if err != nil {
		return nil, fmt.Errorf("host events: %w", err)
	}
	for _, e := range slices.Backward(evs) {
		f.Events = append(f.Events, hostEvent(e))
	}
	return f, nil
}

// hostEvent is a fleet event as the dashboard shows it: of KindHost, with
// no app, its reason in the fleet's words ("host h2 unreachable for 5s").
func hostEvent(e api.Event) dashboard.Event {
	return dashboard.Event{Seq: e.Seq, Time: e.Time, Instance: e.Instance, Kind: dashboard.KindHost, Reason: e.Reason}
}
