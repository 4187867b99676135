package main

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// waitHostsReady waits until every host of the fleet is ready.
func (s *serverSide) waitHostsReady(ctx context.Context) error {
	return poll(ctx, 100*time.Millisecond, s.hostsReady)
}

// hostsReady says whether every host of the leader's fleet is ready.
func (s *serverSide) hostsReady() error {
	ready := 0
	for _, h := range s.hostStatus() {
		if h.State == api.HostReady {
			ready++
		}
	}
	if ready != s.sc.Hosts {
		return fmt.Errorf("%d of %d hosts ready", ready, s.sc.Hosts)
	}
	return nil
}

// appsReady says whether the leader runs every app and each one's
// controller has had its desired count in service (Controller.Ready).
func (s *serverSide) appsReady() error {
	apps := s.appList()
	if len(apps) != s.sc.Apps {
		return fmt.Errorf("the leader runs %d of %d apps", len(apps), s.sc.Apps)
	}
	for _, a := range apps {
		select {
		case <-a.ctl.Ready():
		default:
			return fmt.Errorf("%s is not ready (%s)", a.name, s.inService())
		}
	}
	return nil
}

// waitAppsReady waits until every app's controller of the leader's term
// has had its desired count in service (Controller.Ready). A controller
// that ends because its term ended (a change of leader) is not an error:
// the wait begins again with the next term's.
func (s *serverSide) waitAppsReady(ctx context.Context) error {
	for {
		var apps []*appRun
		if err := poll(ctx, 20*time.Millisecond, func() error {
			apps = s.appList()
			if len(apps) != s.sc.Apps {
				return fmt.Errorf("the leader runs %d of %d apps", len(apps), s.sc.Apps)
			}
			return nil
		}); err != nil {
			return err
		}
		again, err := s.waitReady(ctx, apps)
		if !again {
			return err
		}
	}
}

// waitReady waits until every one of apps is ready; again when one
// ended because its term did.
func (s *serverSide) waitReady(ctx context.Context, apps []*appRun) (again bool, err error) {
	for _, a := range apps {
		select {
		case <-a.ctl.Ready():
		case err := <-a.done:
			a.done <- err
			if cur := s.appList(); len(cur) == 0 || cur[0] != apps[0] {
				return true, nil
			}
			return false, fmt.Errorf("%s ended before its instances served: %v", a.name, err)
		case <-ctx.Done():
			return false, fmt.Errorf("%s: %w (%s)", a.name, ctx.Err(), s.inService())
		}
	}
	return false, nil
}

// states counts the leader's instances by state and its hosts by state.
func (s *serverSide) states() string {
	states := map[string]int{}
	for _, a := range s.appList() {
		for _, in := range a.ctl.Status().Instances {
			states[in.State.String()]++
		}
	}
	hosts := map[string]int{}
	for _, h := range s.hostStatus() {
		hosts[string(h.State)]++
	}
	return fmt.Sprintf("instances %v; hosts %v", states, hosts)
}

// inService sums the instances in service over the apps, for errors.
func (s *serverSide) inService() string {
	n, all := 0, 0
	for _, a := range s.appList() {
		st := a.ctl.Status()
		n += st.InService
		all += len(st.Instances)
	}
	return fmt.Sprintf("%d of %d instances in service", n, all)
}

// serving checks that every app has exactly its desired count of
// instances, all in service, and that none of them is in gone.
func (s *serverSide) serving(gone map[string]bool) error {
	apps := s.appList()
	if len(apps) != s.sc.Apps {
		return fmt.Errorf("the leader runs %d of %d apps", len(apps), s.sc.Apps)
	}
	for _, a := range apps {
		st := a.ctl.Status()
		if st.InService != s.sc.PerApp || len(st.Instances) != s.sc.PerApp {
			return fmt.Errorf("%s: %d in service of %d instances, want %d", a.name, st.InService, len(st.Instances), s.sc.PerApp)
		}
		for _, in := range st.Instances {
			if gone[in.ID] {
				return fmt.Errorf("%s: %s of a lost host is still listed (%s)", a.name, in.ID, in.State)
			}
		}
	}
	return nil
}

// spread returns the fewest and the most instances on one host.
func (s *serverSide) spread() (lo, hi int) {
	lo = -1
	for _, h := range s.hostStatus() {
		if lo < 0 || h.Instances < lo {
			lo = h.Instances
		}
		hi = max(hi, h.Instances)
	}
	return lo, hi
}

// busiestHost returns the host with the most instances and their ids.
func (s *serverSide) busiestHost() (string, map[string]bool) {
	var name string
	most := -1
	for _, h := range s.hostStatus() {
		if h.Instances > most {
			name, most = h.Name, h.Instances
		}
	}
	ids := map[string]bool{}
	f := s.fleet()
	if f == nil {
		return name, ids
	}
	for _, list := range f.InstancesOn(name) {
		for _, id := range list {
			ids[id] = true
		}
	}
	return name, ids
}

// waitHostState waits until host name is in state st.
func (s *serverSide) waitHostState(ctx context.Context, name string, st api.HostState) error {
	return poll(ctx, 20*time.Millisecond, func() error { return s.hostIn(name, st) })
}

// hostIn says whether host name is in state st.
func (s *serverSide) hostIn(name string, st api.HostState) error {
	for _, h := range s.hostStatus() {
		if h.Name == name {
			if h.State != st {
				return fmt.Errorf("host %s is %s, want %s", name, h.State, st)
			}
			return nil
		}
	}
	return fmt.Errorf("no host %s", name)
}

// poll calls fn every period until it returns nil, and returns its last
// error, with ctx's, when ctx ends first.
func poll(ctx context.Context, period time.Duration, fn func() error) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		case <-t.C:
		}
	}
}
