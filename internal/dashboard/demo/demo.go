// Package demo is a simulated dashboard.Source for development, screenshots
// and tests: two groups whose instances start, serve, fail and get
// replaced, rolling deploys that advance batch by batch, synthetic traffic
// with realistic latency (including pages that are slow at the target and
// at the transfer), logs and events. It is not real data and is never wired
// into the shoal binary's controller.
//
// The simulation advances only through Step (or Run, which calls Step on a
// ticker), so tests drive it deterministically.
package demo

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/timeseries"
)

// Options configures a Source. The zero value is usable.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Tick is the period of Run. Zero means one second.
	Tick time.Duration
	// StartTicks is how many steps an instance spends starting. Zero
	// means 2.
	StartTicks int
	// Backfill fills the last hour of metrics and a history of events, so
	// the charts are not empty on first look.
	Backfill bool
	// Seed makes the simulation repeatable.
	Seed uint64
}

// Source is a simulated dashboard.Source. It is safe for concurrent use.
type Source struct {
	opts   Options
	series *timeseries.Store
	slow   *timeseries.Slow

	mu     sync.Mutex
	rng    *rand.Rand
	groups []*group // sorted by app
	events []dashboard.Event
	seq    uint64
	nextID int
	logs   map[string]*logBuf
	// changed is closed and replaced whenever logs grow.
	changed chan struct{}
}

type group struct {
	dashboard.Group
	releases []dashboard.Release // newest first
	insts    []*inst
	deploy   *dashboard.Deploy
	baseRPS  float64
}

type inst struct {
	dashboard.Instance
	started time.Time
	ticks   int // steps spent in the current state
	port    int
}

// New returns a simulated Source with two groups, "api" and "web".
func New(opts Options) *Source {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.StartTicks <= 0 {
		opts.StartTicks = 2
	}
	s := &Source{
		opts:    opts,
		series:  timeseries.NewStore(timeseries.Options{}),
		slow:    timeseries.NewSlow(timeseries.SlowOptions{K: 25, Window: 15 * time.Minute}),
		rng:     rand.New(rand.NewPCG(opts.Seed, 0x5ea1)),
		logs:    make(map[string]*logBuf),
		changed: make(chan struct{}),
		nextID:  1,
	}
	now := opts.Now()
	for _, spec := range []struct {
		app              string
		desired, min, mx int
		rps              float64
	}{{"api", 2, 2, 4, 35}, {"web", 3, 2, 6, 60}} {
		g := &group{Group: dashboard.Group{App: spec.app, Release: 3, Desired: spec.desired, Min: spec.min, Max: spec.mx}, baseRPS: spec.rps}
		for v := 3; v >= 1; v-- {
			status := "previous"
			if v == 3 {
				status = "current"
			}
			g.releases = append(g.releases, dashboard.Release{
				Version: v, Digest: s.digest(), CreatedAt: now.Add(-time.Duration(4-v) * 26 * time.Hour),
				Change: []string{"", "first build", "env: SMTP_HOST", "build " + s.digest()[7:14]}[v], Status: status,
			})
		}
		g.deploy = &dashboard.Deploy{From: 2, To: 3, Done: spec.desired, Total: spec.desired, Phase: "done", Started: now.Add(-2 * time.Hour)}
		for range spec.desired {
			in := s.launch(g, 3, now)
			in.State, in.Health = dashboard.StateInService, "passing"
			in.started = now.Add(-time.Duration(90+s.rng.IntN(60)) * time.Minute)
		}
		s.groups = append(s.groups, g)
	}
	if opts.Backfill {
		s.backfill(now)
	}
	return s
}

func (s *Source) digest() string {
	return fmt.Sprintf("sha256:%016x%016x", s.rng.Uint64(), s.rng.Uint64())
}

// event appends an event; s.mu is held.
func (s *Source) event(now time.Time, app, instance, kind, reason string) {
	s.seq++
	s.events = append(s.events, dashboard.Event{Seq: s.seq, Time: now, App: app, Instance: instance, Kind: kind, Reason: reason})
	if len(s.events) > 5000 {
		s.events = slices.Delete(s.events, 0, 1000)
	}
}

// launch adds a pending instance of release to g; s.mu is held.
func (s *Source) launch(g *group, release int, now time.Time) *inst {
	id := fmt.Sprintf("%s-%d", g.App, s.nextID)
	port := 41000 + s.nextID
	s.nextID++
	in := &inst{Instance: dashboard.Instance{ID: id, Release: release, State: dashboard.StatePending, Health: "not checked yet",
		Addr: fmt.Sprintf("127.0.0.1:%d", port), Host: "local"}, started: now, port: port}
	g.insts = append(g.insts, in)
	s.logs[id] = &logBuf{}
	s.logLine(id, now, fmt.Sprintf("shoal: starting release v%d on port %d", release, port))
	return in
}

func (s *Source) find(id string) (*group, *inst) {
	for _, g := range s.groups {
		for _, in := range g.insts {
			if in.ID == id {
				return g, in
			}
		}
	}
	return nil, nil
}

func (s *Source) groupOf(app string) *group {
	for _, g := range s.groups {
		if g.App == app {
			return g
		}
	}
	return nil
}

// Kill makes an instance fail as if its process died; the simulation
// replaces it in the next steps.
func (s *Source) Kill(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, in := s.find(id)
	if in == nil || in.State == dashboard.StateStopped {
		return fmt.Errorf("instance %s: %w", id, dashboard.ErrNotFound)
	}
	now := s.opts.Now()
	in.State, in.Health, in.ticks, in.RPS = dashboard.StateFailed, "failing: process exited (signal: killed)", 0, 0
	s.logLine(id, now, "shoal: process exited: signal: killed")
	s.event(now, g.App, id, dashboard.KindState, "in_service -> failed: process exited (signal: killed)")
	return nil
}

// Deploy starts a rolling deploy of a new release of app (a new build).
func (s *Source) Deploy(app string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupOf(app)
	if g == nil {
		return 0, fmt.Errorf("app %s: %w", app, dashboard.ErrNotFound)
	}
	if g.deploy != nil && g.deploy.Active {
		return 0, fmt.Errorf("app %s: a deploy is in progress: %w", app, dashboard.ErrConflict)
	}
	now := s.opts.Now()
	v := g.releases[0].Version + 1
	d := s.digest()
	g.releases = slices.Insert(g.releases, 0, dashboard.Release{Version: v, Digest: d, CreatedAt: now, Change: "build " + d[7:14], Status: "deploying"})
	s.startDeploy(g, v, false, now)
	return v, nil
}

// Rollback implements dashboard.Source.
func (s *Source) Rollback(ctx context.Context, app string, version int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupOf(app)
	if g == nil {
		return fmt.Errorf("app %s: %w", app, dashboard.ErrNotFound)
	}
	i := slices.IndexFunc(g.releases, func(r dashboard.Release) bool { return r.Version == version })
	if i < 0 {
		return fmt.Errorf("app %s release %d: %w", app, version, dashboard.ErrNotFound)
	}
	if g.deploy != nil && g.deploy.Active {
		return fmt.Errorf("app %s: a deploy is in progress: %w", app, dashboard.ErrConflict)
	}
	if version == g.Release {
		return fmt.Errorf("app %s already runs release %d: %w", app, version, dashboard.ErrConflict)
	}
	g.releases[i].Status = "deploying"
	s.startDeploy(g, version, true, s.opts.Now())
	return nil
}

// Scale sets a group's desired count, as the autoscaler would, with the
// reason shown in its event.
func (s *Source) Scale(app string, desired int, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupOf(app)
	if g == nil {
		return fmt.Errorf("app %s: %w", app, dashboard.ErrNotFound)
	}
	desired = min(max(desired, g.Min), g.Max)
	s.event(s.opts.Now(), app, "", dashboard.KindScale, fmt.Sprintf("desired %d -> %d: %s", g.Desired, desired, reason))
	g.Desired = desired
	return nil
}

func (s *Source) startDeploy(g *group, to int, rollback bool, now time.Time) {
	g.deploy = &dashboard.Deploy{Active: true, From: g.Release, To: to, Total: g.Desired, Phase: "launching", Rollback: rollback, Started: now}
	verb := "deploy"
	if rollback {
		verb = "rollback"
	}
	s.event(now, g.App, "", dashboard.KindDeploy, fmt.Sprintf("%s v%d -> v%d started: %d instances, batches of 1", verb, g.Release, to, g.Desired))
	g.Release = to
}

// Run steps the simulation every Tick until ctx ends; it returns ctx's
// cause.
func (s *Source) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
			s.Step()
		}
	}
}

// Groups implements dashboard.Source.
func (s *Source) Groups(ctx context.Context) ([]dashboard.Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	out := make([]dashboard.Group, 0, len(s.groups))
	for _, g := range s.groups {
		dg := g.Group
		dg.Instances, dg.Targets = nil, nil
		for _, in := range g.insts {
			di := in.Instance
			if in.State == dashboard.StateInService || in.State == dashboard.StateDraining {
				di.Uptime = now.Sub(in.started).Truncate(time.Second)
			}
			dg.Instances = append(dg.Instances, di)
			if t, ok := target(in); ok {
				dg.Targets = append(dg.Targets, t)
			}
		}
		if g.deploy != nil {
			d := *g.deploy
			dg.Deploy = &d
		}
		// Simulated long-polling clients: a few per serving instance,
		// polls answered every 25 s (SockJS's default).
		serving := 0
		for _, in := range g.insts {
			if in.State == dashboard.StateInService {
				serving++
			}
		}
		dg.Held = &dashboard.HeldStreams{Open: 6 * serving, Ended: 14 * serving * 10, Median: 25 * time.Second, Window: 10 * time.Minute}
		out = append(out, dg)
	}
	return out, nil
}

// target is the balancer's view of an instance, if it is in the pool.
func target(in *inst) (dashboard.Target, bool) {
	t := dashboard.Target{Addr: in.Addr, Instance: in.ID}
	switch in.State {
	case dashboard.StateInService:
		t.State, t.Reason, t.InFlight = "healthy", "passing GET /healthz (200)", int(in.RPS/20)
	case dashboard.StateDraining:
		t.State, t.Reason = "draining", "replaced by a new release; waiting for in-flight requests"
	case dashboard.StateFailed, dashboard.StateUnhealthy:
		t.State, t.Reason = "unhealthy", "GET /healthz: connection refused (3 failures)"
	default:
		return t, false
	}
	return t, true
}

// Events implements dashboard.Source.
func (s *Source) Events(ctx context.Context, afterSeq uint64, limit int) ([]dashboard.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.events, afterSeq+1, func(e dashboard.Event, seq uint64) int {
		return compare(e.Seq, seq)
	})
	evs := s.events[i:]
	if limit > 0 && len(evs) > limit {
		evs = evs[len(evs)-limit:]
	}
	return slices.Clone(evs), nil
}

func compare(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Releases implements dashboard.Source.
func (s *Source) Releases(ctx context.Context, app string) ([]dashboard.Release, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupOf(app)
	if g == nil {
		return nil, fmt.Errorf("app %s: %w", app, dashboard.ErrNotFound)
	}
	return slices.Clone(g.releases), nil
}

// Instance implements dashboard.Source.
func (s *Source) Instance(ctx context.Context, id string) (dashboard.InstanceDetail, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, in := s.find(id)
	if in == nil {
		return dashboard.InstanceDetail{}, fmt.Errorf("instance %s: %w", id, dashboard.ErrNotFound)
	}
	d := dashboard.InstanceDetail{Instance: in.Instance, App: g.App}
	if in.State == dashboard.StateInService || in.State == dashboard.StateDraining {
		d.Uptime = s.opts.Now().Sub(in.started).Truncate(time.Second)
	}
	for _, e := range s.events {
		if e.Instance == id {
			d.Events = append(d.Events, e)
		}
	}
	return d, nil
}

// Series implements dashboard.Source.
func (s *Source) Series() *timeseries.Store { return s.series }

// Slow implements dashboard.Source.
func (s *Source) Slow() []timeseries.SlowRequest { return s.slow.Top(s.opts.Now(), 0) }

// LogTail implements dashboard.Source.
func (s *Source) LogTail(ctx context.Context, id string, lines int, follow bool, w io.Writer) error {
	s.mu.Lock()
	lb := s.logs[id]
	if lb == nil {
		s.mu.Unlock()
		return fmt.Errorf("instance %s: %w", id, dashboard.ErrNotFound)
	}
	text, next := lb.tail(lines)
	changed := s.changed
	s.mu.Unlock()
	for {
		if _, err := io.WriteString(w, text); err != nil {
			return fmt.Errorf("write log: %w", err)
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		s.mu.Lock()
		text, next = lb.since(next)
		changed = s.changed
		s.mu.Unlock()
	}
}

// Fleet implements dashboard.Source: the demo simulates one machine, so
// it has no fleet and the overview shows no hosts card.
func (s *Source) Fleet(context.Context) (*dashboard.Fleet, error) { return nil, nil }
