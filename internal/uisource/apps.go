package uisource

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/timeseries"
)

// AppsOptions configures Apps.
type AppsOptions struct {
	// Series and Slow are the request metrics of every app, fed by one
	// Observer on the shared balancer (it keys each request by its pool,
	// which is the app), and the gauges every app's Source samples. Each
	// app's Source must be made with the same two. Required.
	Series *timeseries.Store
	Slow   *timeseries.Slow
	// PageLoad is the Observer's page-load report of every app;
	// optional.
	PageLoad *timeseries.PageLoad
	// Hosts and HostEvents feed the hosts card as Options.Hosts and
	// Options.HostEvents do; both optional.
	Hosts      func() []api.HostStatus
	HostEvents func(after uint64, limit int) ([]api.Event, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Apps implements dashboard.Source over the Sources of several apps, as
// `shoal server` runs them: one dashboard shows every app's group, its
// releases and events, behind one login, with the fleet's hosts card.
// Apps are added with Add. Safe for concurrent use.
type Apps struct {
	o     AppsOptions
	fleet Source // a Source with only Hosts and HostEvents: its Fleet

	mu   sync.Mutex
	apps map[string]*Source
}

// NewApps returns an Apps with no app.
func NewApps(o AppsOptions) (*Apps, error) {
	if o.Series == nil || o.Slow == nil {
		return nil, errors.New("uisource: AppsOptions needs Series and Slow")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Apps{o: o, fleet: Source{o: Options{Hosts: o.Hosts, HostEvents: o.HostEvents}}, apps: map[string]*Source{}}, nil
}

// Add shows s, the Source of one app (made with the Apps' Series and
// Slow), replacing the one of that app shown before.
func (a *Apps) Add(s *Source) {
	a.mu.Lock()
	a.apps[s.app] = s
	a.mu.Unlock()
}

// sources returns the apps' Sources sorted by app.
func (a *Apps) sources() []*Source {
	a.mu.Lock()
	out := make([]*Source, 0, len(a.apps))
	for _, s := range a.apps {
		out = append(out, s)
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y *Source) int { return cmp.Compare(x.app, y.app) })
	return out
}

// source returns app's Source, or an error wrapping dashboard.ErrNotFound.
func (a *Apps) source(app string) (*Source, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.apps[app]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("app %s: %w", app, dashboard.ErrNotFound)
}

var _ dashboard.Source = (*Apps)(nil)

// Groups implements dashboard.Source: every app's group, sorted by app.
func (a *Apps) Groups(ctx context.Context) ([]dashboard.Group, error) {
	out := []dashboard.Group{}
	for _, s := range a.sources() {
		gs, err := s.Groups(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, gs...)
	}
	return out, nil
}

// Events implements dashboard.Source: the newest limit events of every
// app after afterSeq (each app's found as Source.Events finds them),
// oldest first.
func (a *Apps) Events(ctx context.Context, afterSeq uint64, limit int) ([]dashboard.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []dashboard.Event
	for _, s := range a.sources() {
		evs, err := s.Events(ctx, afterSeq, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	slices.SortFunc(out, func(x, y dashboard.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	if out == nil {
		out = []dashboard.Event{}
	}
	return out, nil
}

// Releases implements dashboard.Source.
func (a *Apps) Releases(ctx context.Context, app string) ([]dashboard.Release, error) {
	s, err := a.source(app)
	if err != nil {
		return nil, err
	}
	return s.Releases(ctx, app)
}

// Rollback implements dashboard.Source.
func (a *Apps) Rollback(ctx context.Context, app string, version int) error {
	s, err := a.source(app)
	if err != nil {
		return err
	}
	return s.Rollback(ctx, app, version)
}

// Instance implements dashboard.Source: the instance of whichever app
// knows it, running ones first.
func (a *Apps) Instance(ctx context.Context, id string) (dashboard.InstanceDetail, error) {
	srcs := a.sources()
	if s := owner(srcs, id); s != nil {
		return s.Instance(ctx, id)
	}
	for _, s := range srcs {
		d, err := s.Instance(ctx, id)
		if !errors.Is(err, dashboard.ErrNotFound) {
			return d, err
		}
	}
	return dashboard.InstanceDetail{}, fmt.Errorf("instance %s: %w", id, dashboard.ErrNotFound)
}

// LogTail implements dashboard.Source through the app that runs id, or
// else the first that knows it.
func (a *Apps) LogTail(ctx context.Context, id string, lines int, follow bool, w io.Writer) error {
	srcs := a.sources()
	if s := owner(srcs, id); s != nil {
		return s.LogTail(ctx, id, lines, follow, w)
	}
	for _, s := range srcs {
		if err := s.LogTail(ctx, id, lines, follow, w); !errors.Is(err, dashboard.ErrNotFound) {
			return err
		}
	}
	return fmt.Errorf("instance %s: %w", id, dashboard.ErrNotFound)
}

// owner returns the Source whose controller runs instance id, or nil.
func owner(srcs []*Source, id string) *Source {
	for _, s := range srcs {
		for _, is := range s.o.Controller.Status().Instances {
			if is.ID == id {
				return s
			}
		}
	}
	return nil
}

// Series implements dashboard.Source: the shared store.
func (a *Apps) Series() *timeseries.Store { return a.o.Series }

// Slow implements dashboard.Source: the slowest requests of every app.
func (a *Apps) Slow() []timeseries.SlowRequest { return a.o.Slow.Top(a.o.Now(), 0) }

// Fleet implements dashboard.Source: the hosts card of AppsOptions.Hosts
// and HostEvents, shown with or without apps.
func (a *Apps) Fleet(ctx context.Context) (*dashboard.Fleet, error) { return a.fleet.Fleet(ctx) }

// PageLoad implements dashboard.PageLoadSource: the page-load report of
// every app (nil when AppsOptions had none).
func (a *Apps) PageLoad() *timeseries.PageLoad { return a.o.PageLoad }
