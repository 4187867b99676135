package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/placement"
)

// placementHostsLocked is every host as placement sees it; tried holds the
// hosts a Start left out, with the reason.
func (f *Fleet) placementHostsLocked(tried map[string]string) []placement.Host {
	out := make([]placement.Host, 0, len(f.hosts))
	for name, h := range f.hosts {
		ph := placement.Host{Name: name, Region: h.rec.Region, Zone: h.rec.Zone, CPU: h.rec.CPU, Memory: h.rec.MemoryBytes, Used: h.used}
		st, reason := f.stateLocked(h)
		switch {
		case tried[name] != "":
			ph.Unready = tried[name]
		case st != api.HostReady:
			ph.Unready = string(st)
			if st == api.HostUnreachable {
				ph.Unready = reason
			}
		}
		out = append(out, ph)
	}
	return out
}

// Status describes every host, sorted by name, for `shoal hosts`.
func (f *Fleet) Status() []api.HostStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]api.HostStatus, 0, len(f.hosts))
	for name, h := range f.hosts {
		st, reason := f.stateLocked(h)
		s := api.HostStatus{Name: name, Role: api.RoleAgent, URL: h.rec.URL, Zone: h.rec.Zone, Region: h.rec.Region, State: st, Reason: reason,
			CPU: h.rec.CPU, MemoryBytes: h.rec.MemoryBytes, LastHeartbeat: h.lastBeat,
			Epoch: h.rec.Epoch, Generation: h.rec.Generation, Version: h.rec.Version,
			Instances: h.used.Instances, UsedCPU: h.used.CPU, UsedMemoryBytes: h.used.Memory}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b api.HostStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ErrUnknownHost is wrapped by the errors of calls that name a host the
// fleet does not know.
var ErrUnknownHost = errors.New("unknown host")

// Drain keeps new instances off the host name (placement skips it) and
// records it, so that it stays draining across restarts of the server,
// until Undrain. It asks each app's controller to move its instances
// there away (controller.Evacuation through the app's Host; drain.go),
// which the controllers do launch first; it returns once the drain is
// recorded, not once the host is empty (Status counts its instances).
func (f *Fleet) Drain(name string) error { return f.setDraining(name, true) }

// Undrain lets placement choose the host name again. Instances moved away
// stay where they went; moves not yet done are withdrawn.
func (f *Fleet) Undrain(name string) error { return f.setDraining(name, false) }

func (f *Fleet) setDraining(name string, on bool) error {
	f.mu.Lock()
	h := f.hosts[name]
	if h == nil {
		f.mu.Unlock()
		return fmt.Errorf("drain host %s: %w", name, ErrUnknownHost)
	}
	if h.rec.Draining == on {
		f.mu.Unlock()
		return nil
	}
	h.rec.Draining = on
	f.notifyLocked()
	f.mu.Unlock()
	if err := f.persist(h); err != nil {
		// A drain that is not recorded is not done.
		f.mu.Lock()
		h.rec.Draining = !on
		f.notifyLocked()
		f.mu.Unlock()
		return fmt.Errorf("drain host %s: %w", name, err)
	}
	f.mu.Lock()
	if h.rec.Draining == on { // else a later call changed it, and tells
		f.hostEvacuationsLocked(h) // drain.go
	}
	f.mu.Unlock()
	if on {
		f.event(api.Event{Reason: fmt.Sprintf("host %s draining: no new instance is placed on it", name)}, slog.LevelInfo)
	} else {
		f.event(api.Event{Reason: fmt.Sprintf("host %s no longer draining", name)}, slog.LevelInfo)
	}
	return nil
}

// InstancesOn returns the ids of the instances placed on host name, by
// app (for moving them off a draining host).
func (f *Fleet) InstancesOn(name string) map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	h := f.hosts[name]
	if h == nil {
		return out
	}
	for id, p := range h.instances {
		if !p.ended {
			out[p.app] = append(out[p.app], id)
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// Settle waits until no host is joining: each known host has been listed
// (or declared lost) in this run. Call it after Run has started and before
// Adopt, so that Adopt sees every host that answers. It returns ctx's
// error if ctx ends first.
func (f *Fleet) Settle(ctx context.Context) error {
	for {
		f.mu.Lock()
		joining := ""
		for name, h := range f.hosts {
			if st, _ := f.stateLocked(h); st == api.HostJoining {
				joining = name
				break
			}
		}
		changed := f.changed
		f.mu.Unlock()
		if joining == "" {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("settle: host %s still joining: %w", joining, ctx.Err())
		}
	}
}

// AdoptedInstance is an instance of an app that runs on a ready host of
// the fleet, for its controller to take over after a restart of the
// server instead of starting a new one.
type AdoptedInstance struct {
	ID      string
	Host    string
	Zone    string
	App     string
	Release int
	Digest  string
	// Addr is where the instance serves (advertise-ip:port).
	Addr    string
	PID     int
	Started time.Time
	// CPU and Memory are what the instance declared at its start.
	CPU    float64
	Memory int64
}

// Adopt lists every ready or draining host (a fresh GET /v1/instances) and
// returns the instances of app that run there under the host's current
// generation, sorted by id; they are placed in the registry (their exits
// reach the app's Host, their resources count for placement). Instances of
// an older generation are the stale ones the registry stops, never
// returned. A host that cannot be listed is skipped and named in the
// error, which comes with the instances of the other hosts.
//
// Contract for the controller (a later step): call Adopt once at start,
// after Settle and before the first launch; take each returned instance
// as running (probe it, put it in the pool when healthy) and count it
// toward the group; instances of releases the controller does not keep are
// its to stop through Host.Stop. Instances on hosts that were unreachable
// at the time are not returned: those hosts' instances were reported
// ended before the restart, or the host is declared lost after LostAfter
// (its generation bumped), so that when it answers again they are stale
// and stopped.
func (f *Fleet) Adopt(ctx context.Context, app string) ([]AdoptedInstance, error) {
	type target struct {
		h   *host
		gen uint64
	}
	f.mu.Lock()
	var targets []target
	for _, h := range f.hosts {
		if st, _ := f.stateLocked(h); st == api.HostReady || st == api.HostDraining {
			targets = append(targets, target{h, h.rec.Generation})
		}
	}
	f.mu.Unlock()
	var out []AdoptedInstance
	var errs []error
	for _, t := range targets {
		f.mu.Lock()
		c, name := t.h.client, t.h.rec.Name
		f.mu.Unlock()
		list, err := c.List(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("adopt %s: host %s: %w", app, name, err))
			continue
		}
		f.mu.Lock()
		if t.h.rec.Generation != t.gen {
			f.mu.Unlock()
			errs = append(errs, fmt.Errorf("adopt %s: host %s was declared lost meanwhile", app, name))
			continue
		}
		for _, in := range list.Instances {
			g := labelUint(in.Labels, LabelGeneration)
			if in.App != app || g != t.gen {
				continue
			}
			if _, stale := t.h.stale[in.ID]; stale {
				continue
			}
			p := t.h.instances[in.ID]
			if p == nil {
				p = &placed{app: in.App, release: in.Release, gen: g, addr: in.Addr, seen: t.h.listSeq,
					cpu: labelFloat(in.Labels, LabelCPU), mem: int64(labelUint(in.Labels, LabelMemory))}
				f.placeLocked(t.h, in.ID, p)
			}
			if p.starting || p.ended {
				continue
			}
			out = append(out, AdoptedInstance{ID: in.ID, Host: name, Zone: t.h.rec.Zone, App: in.App, Release: in.Release, Digest: in.Digest,
				Addr: in.Addr, PID: in.PID, Started: in.Started, CPU: p.cpu, Memory: p.mem})
		}
		f.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b AdoptedInstance) int { return strings.Compare(a.ID, b.ID) })
	return out, errors.Join(errs...)
}
