// Package uisource adapts the controller and the balancer to
// dashboard.Source, so that the web dashboard of `shoal up` shows the real
// group: instances and their health from the controller, targets from the
// balancer's pool, events and releases from the store, deploy progress
// from the rollout in flight, CPU and memory sampled from the host, and
// request metrics recorded by a balancer observer.
//
// It owns three things: the Source (read-only views plus Rollback), the
// Observer (the balancer's per-request hook, feeding a timeseries.Store and
// a timeseries.Slow keeper), and the sampler (Run), which turns the host's
// cumulative CPU seconds into cores and keeps the per-instance gauges.
package uisource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/timeseries"
)

// Options configures a Source.
type Options struct {
	// Controller runs the group. Required.
	Controller *controller.Controller
	// Host is the controller's host; the sampler reads instance CPU and
	// memory from it. Required.
	Host controller.Host
	// Pool is the balancer pool of the group (the one the controller
	// fills). Required.
	Pool *pool.Pool
	// Store is the controller's store; Events uses it to find the newest
	// events. Required.
	Store *store.Store
	// Series receives request metrics (from the Observer) and instance
	// gauges (from Run). Required.
	Series *timeseries.Store
	// Slow keeps the slowest recent requests (from the Observer). Required.
	Slow *timeseries.Slow
	// Held is the Observer's store of held-open exchanges (long polls,
	// streams, server-sent events) and HeldOpen counts those open now (in
	// `shoal up`: lb.Balancer.HeldOpen of the group's pool). Both optional:
	// without them the overview shows no held streams.
	Held     *timeseries.Store
	HeldOpen func() int
	// PageLoad is the Observer's page-load report, shown on the
	// slow-requests page; optional.
	PageLoad *timeseries.PageLoad
	// Hosts returns the fleet's hosts, sorted by name (`shoal server`:
	// fleet.Status), and HostEvents at most limit host events with Seq >
	// after, oldest first, the newest of them when more match (as
	// Controller.Events). Both optional, called from request handlers and
	// must not block on I/O: without Hosts the overview shows no hosts
	// card (`shoal up`), without HostEvents the card lists no events.
	Hosts      func() []api.HostStatus
	HostEvents func(after uint64, limit int) ([]api.Event, error)
	// Logger receives sampling trouble (Debug). Nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SampleInterval is the period of Run. Zero means one second.
	SampleInterval time.Duration
}

// Source implements dashboard.Source over a running controller. It is safe
// for concurrent use. Create it with New; call Run to keep the CPU and
// memory gauges current.
type Source struct {
	o   Options
	log *slog.Logger
	app string

	mu sync.Mutex
	// last is the latest rollout seen, kept after the controller forgets
	// it so that the releases page can say how the last deploy ended.
	last *dashboard.Deploy
}

// New returns a Source. It does no I/O.
func New(o Options) (*Source, error) {
	switch {
	case o.Controller == nil:
		return nil, errors.New("uisource: Controller is required")
	case o.Host == nil:
		return nil, errors.New("uisource: Host is required")
	case o.Pool == nil:
		return nil, errors.New("uisource: Pool is required")
	case o.Store == nil:
		return nil, errors.New("uisource: Store is required")
	case o.Series == nil:
		return nil, errors.New("uisource: Series is required")
	case o.Slow == nil:
		return nil, errors.New("uisource: Slow is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SampleInterval <= 0 {
		o.SampleInterval = time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{o: o, log: log, app: o.Controller.Status().App}, nil
}

var _ dashboard.Source = (*Source)(nil)

// Groups implements dashboard.Source: the one group of the controller.
func (s *Source) Groups(ctx context.Context) ([]dashboard.Group, error) {
	p := s.progress() // before the status: see deploy
	st := s.o.Controller.Status()
	g := dashboard.Group{App: st.App, Release: st.Release, Desired: st.Desired, Min: st.Min, Max: st.Max,
		Instances: []dashboard.Instance{}, Targets: []dashboard.Target{}}
	byAddr := map[string]string{}
	for _, is := range st.Instances {
		g.Instances = append(g.Instances, s.instance(is))
		if is.Addr != "" {
			byAddr[is.Addr] = is.ID
		}
	}
	sortInstances(g.Instances)
	for _, t := range s.o.Pool.Status().Targets {
		g.Targets = append(g.Targets, dashboard.Target{Addr: t.Addr, Instance: byAddr[t.Addr], State: t.State,
			Reason: t.Reason, InFlight: int(t.InFlight)})
	}
	g.Autoscale = autoscaleView(s.o.Controller.Autoscale())
	g.Held = s.held(st.App)
	if d := s.deploy(p, st); d != nil {
		g.Deploy = d
		if d.Active {
			g.Release = d.To
		}
	}
	return []dashboard.Group{g}, nil
}

// instance converts one controller instance, with its latest gauges.
func (s *Source) instance(is api.InstanceStatus) dashboard.Instance {
	in := dashboard.Instance{ID: is.ID, Release: is.Release, State: is.State.String(), Health: health(is), Addr: is.Addr,
		Host: is.Host, Zone: is.Zone, RPS: is.RequestsPerSecond}
	if is.UptimeSeconds > 0 {
		in.Uptime = (time.Duration(is.UptimeSeconds * float64(time.Second))).Truncate(time.Second)
	}
	in.CPU, _ = s.latest(timeseries.InstanceCPU(is.ID))
	rss, _ := s.latest(timeseries.InstanceRSS(is.ID))
	in.RSS = int64(rss)
	return in
}

// latest returns the newest value of a gauge within the last 5 seconds.
func (s *Source) latest(name string) (float64, bool) {
	now := s.o.Now()
	pts := s.o.Series.Gauge(name, now.Add(-5*time.Second), now.Add(time.Second), time.Second)
	for i := len(pts) - 1; i >= 0; i-- {
		if pts[i].OK {
			return pts[i].Value, true
		}
	}
	return 0, false
}

// health describes the last health verdict in words.
func health(is api.InstanceStatus) string {
	switch {
	case is.State == api.Pending:
		return "not checked yet"
	case is.Health == "unknown" || is.Health == "":
		return "not checked yet"
	case is.State == api.Starting && !is.Healthy:
		return "starting: " + is.Health
	case is.Healthy:
		return "passing: " + is.Health
	}
	return "failing: " + is.Health
}

func sortInstances(ins []dashboard.Instance) {
	slices.SortFunc(ins, func(a, b dashboard.Instance) int { return strings.Compare(a.ID, b.ID) })
}

// Instance implements dashboard.Source. An instance that has ended is
// still found through its events (the last one gives its state), so that
// a replaced instance's page says what happened to it.
func (s *Source) Instance(ctx context.Context, id string) (dashboard.InstanceDetail, error) {
	st := s.o.Controller.Status()
	var d dashboard.InstanceDetail
	found := false
	for _, is := range st.Instances {
		if is.ID == id {
			d.Instance, found = s.instance(is), true
		}
	}
	evs, err := s.instanceEvents(id)
	if err != nil {
		return d, err
	}
	if !found {
		if len(evs) == 0 {
			return d, fmt.Errorf("instance %s: %w", id, dashboard.ErrNotFound)
		}
		d.Instance = dashboard.Instance{ID: id, Health: "not running"}
		for _, e := range evs {
			if e.state != "" {
				d.State = e.state
			}
			if e.release != 0 {
				d.Release = e.release
			}
			if e.addr != "" {
				d.Addr = e.addr
			}
		}
	}
	d.App = st.App
	d.Events = make([]dashboard.Event, len(evs))
	for i, e := range evs {
		d.Events[i] = e.Event
	}
	return d, nil
}

// LogTail implements dashboard.Source through the controller, which
// redacts secret values.
func (s *Source) LogTail(ctx context.Context, id string, lines int, follow bool, w io.Writer) error {
	err := s.o.Controller.Logs(ctx, id, lines, follow, w)
	if errors.Is(err, controller.ErrUnknownInstance) {
		return fmt.Errorf("instance %s: %w: %w", id, dashboard.ErrNotFound, err)
	}
	return err
}

// Series implements dashboard.Source.
func (s *Source) Series() *timeseries.Store { return s.o.Series }

// Slow implements dashboard.Source.
func (s *Source) Slow() []timeseries.SlowRequest { return s.o.Slow.Top(s.o.Now(), 0) }

// heldWindow is how far back the overview's median held duration looks.
const heldWindow = 10 * time.Minute

// held returns the group's held-open exchanges for the overview, or nil
// when the Source was given neither Held nor HeldOpen.
func (s *Source) held(app string) *dashboard.HeldStreams {
	if s.o.Held == nil && s.o.HeldOpen == nil {
		return nil
	}
	h := &dashboard.HeldStreams{Window: heldWindow}
	if s.o.HeldOpen != nil {
		h.Open = s.o.HeldOpen()
	}
	if s.o.Held != nil {
		sum := s.o.Held.Summarize(timeseries.Key{Group: app}, s.o.Now(), heldWindow)
		h.Ended, h.Median = sum.Requests, sum.P50
	}
	return h
}

// PageLoad implements dashboard.PageLoadSource: the page-load report
// (nil when Options had none).
func (s *Source) PageLoad() *timeseries.PageLoad { return s.o.PageLoad }
