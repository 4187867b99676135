package daemon

import (
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/uisource"
)

// The dashboard of `shoal server`, at /ui/ on the admin listener: one
// dashboard for every app (the dashboard shows any number of groups), so
// one login with the admin token shows each app's group, releases,
// events and instances (with their host and zone), the slow requests of
// every app, and the fleet's hosts card.
//
// The request series come from one uisource.Observer on the shared
// balancer: it keys every request by the pool that served it, and each
// app's pool is named after the app, so each app's charts show its own
// traffic. Each app's uisource.Source samples its instances' CPU and
// memory into the same store while its controller runs.

// uiSampleEvery is how often each app's dashboard samples its instances'
// CPU and memory from their agents.
const uiSampleEvery = 2 * time.Second

// hostCardScan is how many of the newest stored events (of every app and
// the fleet) the hosts card searches for the fleet's latest ones.
const hostCardScan = 2000

// openUI builds the dashboard with no app yet; openAppLocked adds each.
func (s *Server) openUI() error {
	apps, err := uisource.NewApps(uisource.AppsOptions{Series: s.dash.series, Slow: s.dash.slow, PageLoad: s.dash.pageLoad,
		Hosts: s.hostsAndNodes, HostEvents: s.latestHostEvents})
	if err != nil {
		return err
	}
	s.uiApps = apps
	s.ui = dashboard.New(dashboard.Options{Token: s.token, Source: apps, Logger: s.log.With("part", "dashboard")})
	return nil
}

// appSource is the dashboard's Source of one app.
func (s *Server) appSource(name string, ctl *controller.Controller, host controller.Host, p *pool.Pool) (*uisource.Source, error) {
	return uisource.New(uisource.Options{Controller: ctl, Host: host, Pool: p, Store: s.st,
		Series: s.dash.series, Slow: s.dash.slow, Held: s.dash.held,
		HeldOpen: func() int { return s.bal.HeldOpen(name) },
		// Each sample asks the instance's agent (one call per instance):
		// every 2 s rather than every second halves that load; the
		// gauges still read as current (uisource keeps 5 s).
		SampleInterval: uiSampleEvery,
		Logger:         s.log.With("part", "dashboard", "app", name)})
}

// hostEventsAfter returns at most limit fleet events with a sequence
// number above after, oldest first: the one reader of the fleet's stored
// events (GET /v1/hosts/events, the hosts card).
func (s *Server) hostEventsAfter(after uint64, limit int) ([]api.Event, error) {
	out := []api.Event{}
	// Other apps' events share the sequence: page until limit is met.
	for range 100 {
		evs, err := s.st.Events(api.FleetEventsApp, after, limit-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
		if len(evs) == 0 || len(out) >= limit {
			break
		}
		after = evs[len(evs)-1].Seq
	}
	return out, nil
}

// latestHostEvents returns the newest limit fleet events with a sequence
// number above after among the newest hostCardScan events, oldest first
// (uisource.Options.HostEvents).
func (s *Server) latestHostEvents(after uint64, limit int) ([]api.Event, error) {
	last, err := s.st.LastEventSeq()
	if err != nil {
		return nil, err
	}
	if last > hostCardScan {
		after = max(after, last-hostCardScan)
	}
	evs, err := s.hostEventsAfter(after, hostCardScan)
	if err != nil {
		return nil, err
	}
	if len(evs) > limit {
		evs = evs[len(evs)-limit:]
	}
	return evs, nil
}
