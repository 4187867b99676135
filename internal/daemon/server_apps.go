package daemon

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/uisource"
)

// The app registry of `shoal server`. An app is created by its first
// deploy (createApp: pool, routes, controller on the fleet, then the
// deploy), and reopened at every start from its active release's stored
// configuration (openStoredApps). Its routes on the shared balancer come
// from the configuration of the release it serves (balancer.hosts,
// balancer.path) and are set again after every deploy, rollback or env
// change (refreshRoutes). At most one app is the catch-all (no hosts),
// and no two apps share a host and path: a deploy that would is refused
// naming the other app (routeConflict).

// serverApp is one app of the server. Its fields are set when it is
// opened; hosts and path change under Server.appsMu.
type serverApp struct {
	name    string
	ctl     *controller.Controller
	ui      *uisource.Source // its part of the dashboard (server_ui.go)
	handler http.Handler     // its admin API, answers naming it (adminapi.WithApp)
	hosts   []string         // lowercased balancer.hosts of the routes set; none: catch-all
	path    string
	pool    lb.PoolConfig      // the settings its pool was built with
	stop    context.CancelFunc // ends its controller's Run; nil before it runs
	done    chan struct{}      // closed when its controller's Run returned
}

// openStoredApps opens every app stored with a release, from the
// configuration text of its active release (config.ParseSent: no file of
// this host is read). An app whose first deploy was cut by a stop or a
// crash of the server has releases but no active one: it is opened from
// its newest release's configuration and starts with no release; its
// controller marks that release failed (its rollout cannot be resumed:
// there is nothing to go back to) and stops any instance of it the
// agents still run, and its next deploy makes the next version. An app
// with no release at all was never deployed (its first deploy was
// refused or cut before it made v1) and is not opened: its next deploy
// creates it. An app that cannot be opened is logged and left out, so
// that one damaged record does not keep the others from serving.
func (s *Server) openStoredApps() error {
	groups, err := s.st.Groups()
	if err != nil {
		return fmt.Errorf("list apps: %w", err)
	}
	s.appsMu.Lock()
	defer s.appsMu.Unlock()
	for _, g := range groups {
		rel, ok := s.storedRelease(g)
		if !ok {
			continue
		}
		cfg, err := config.ParseSent(rel.ConfigFile, []byte(rel.Config))
		if err != nil {
			s.log.Error("app not opened: the configuration of its release is invalid", "app", g.App, "release", rel.Version, "error", err)
			continue
		}
		if _, err := s.openAppLocked(cfg); err != nil {
			s.log.Error("app not opened", "app", g.App, "error", err)
		}
	}
	return nil
}

// storedRelease returns the release app g is opened from: its active
// one, or else its newest (a first deploy cut by a restart); false when
// there is none or it cannot be read (logged).
func (s *Server) storedRelease(g api.Group) (api.Release, bool) {
	if g.Release != 0 {
		rel, err := s.st.GetRelease(g.App, g.Release)
		if err != nil {
			s.log.Error("app not opened: its active release cannot be read", "app", g.App, "release", g.Release, "error", err)
			return api.Release{}, false
		}
		return rel, true
	}
	rels, err := s.st.Releases(g.App)
	if err != nil {
		s.log.Error("app not opened: its releases cannot be read", "app", g.App, "error", err)
		return api.Release{}, false
	}
	if len(rels) == 0 {
		return api.Release{}, false // never deployed: its next deploy creates it
	}
	newest := slices.MaxFunc(rels, func(a, b api.Release) int { return a.Version - b.Version })
	s.log.Warn("app reopened without a release: its first deploy did not finish", "app", g.App, "release", newest.Version, "status", string(newest.Status))
	return newest, true
}

// openAppLocked adds the app of cfg: its pool on the balancer, its routes
// (refused with an error wrapping adminapi.ErrConflict when another app
// has them), its controller on the fleet, and its admin API. The
// controller runs when the server runs. appsMu must be held.
func (s *Server) openAppLocked(cfg *config.App) (*serverApp, error) {
	name := cfg.Name
	if err := s.routeConflictLocked(name, cfg); err != nil {
		return nil, err
	}
	pc, err := s.poolConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.bal.AddPool(pc); err != nil {
		return nil, fmt.Errorf("app %s: %w", name, err)
	}
	p, _ := s.bal.Pool(name)
	host := s.fleet().Host(name)
	ctl, err := controller.New(controller.Options{
		Config: cfg, Store: s.st, Writer: s.w, Artifacts: s.arts, Uploads: s.uploads,
		KeepArtifacts: func() []string { return s.keptArtifacts(name) },
		Host:          host, Pool: p, Logger: s.log,
		// Static stability: stopping the server leaves every instance
		// running on its agent; the next start adopts them.
		LeaveRunning: true,
		// Drain before stop through the balancer nodes too.
		AwaitDrain: s.lbs.awaitDrain,
		Latency:    func() ([]float64, []uint64) { return s.bal.LatencyHistogram(name) },
	})
	if err != nil {
		s.bal.RemovePool(name)
		return nil, err
	}
	src, err := s.appSource(name, ctl, host, p)
	if err != nil {
		s.bal.RemovePool(name)
		return nil, err
	}
	mux := http.NewServeMux()
	adminapi.ControllerRoutes(mux, ctl, adminapi.WithBalancer(s.bal), adminapi.WithHosts(s.hostStatus))
	adminapi.DeployRoutes(mux, ctl)
	adminapi.AutoscaleRoutes(mux, ctl)
	a := &serverApp{name: name, ctl: ctl, ui: src, pool: pc, handler: adminapi.WithApp(name, mux), done: make(chan struct{})}
	a.hosts, a.path = routeKey(cfg)
	s.apps[name] = a
	if err := s.setRoutesLocked(); err != nil {
		delete(s.apps, name)
		s.bal.RemovePool(name)
		return nil, err
	}
	s.uiApps.Add(src)
	if s.running != nil {
		s.startAppLocked(a)
	}
	s.log.Info("app opened", "app", name, "hosts", strings.Join(a.hosts, ","), "path", a.path)
	return a, nil
}

// poolConfig is the balancer pool of cfg's app: its settings from
// shoal.yaml, the sticky key from server.yaml (shared by every balancer)
// or else one per app, generated once and kept in the store, and a drain
// timeout of at most balancer.drain_timeout.
func (s *Server) poolConfig(cfg *config.App) (lb.PoolConfig, error) {
	var key []byte
	if cfg.Balancer.NeedsStickyKey() {
		if key = s.cfg.Balancer.Sticky.Secret(); key == nil {
			var err error
			if key, err = s.w.Key(config.StickyKeyName(cfg.Name), 32); err != nil {
				return lb.PoolConfig{}, err
			}
		}
	}
	pc := cfg.PoolConfig(key)
	pc.DrainTimeout = min(pc.DrainTimeout, s.cfg.Balancer.DrainTimeout.D())
	return pc, nil
}

// routeKey returns the lowercased hosts and the path of cfg's routes.
func routeKey(cfg *config.App) (hosts []string, path string) {
	for _, h := range cfg.Balancer.Hosts {
		hosts = append(hosts, strings.ToLower(h))
	}
	path = cfg.Balancer.Path
	if path == "" {
		path = "/"
	}
	return hosts, path
}

// routeConflictLocked returns an error wrapping adminapi.ErrConflict when
// cfg's routes would take another app's: a second catch-all, or a host
// and path that another app has.
func (s *Server) routeConflictLocked(name string, cfg *config.App) error {
	hosts, path := routeKey(cfg)
	for _, other := range s.sortedAppsLocked() {
		if other.name == name {
			continue
		}
		if len(hosts) == 0 && len(other.hosts) == 0 {
			return fmt.Errorf("%w: app %s is the balancer's catch-all already (it sets no balancer.hosts); set balancer.hosts for %s", adminapi.ErrConflict, other.name, name)
		}
		for _, h := range hosts {
			if slices.Contains(other.hosts, h) && other.path == path {
				return fmt.Errorf("%w: app %s has host %s with path %s already; %s cannot have it too", adminapi.ErrConflict, other.name, h, path, name)
			}
		}
	}
	return nil
}

// setRoutesLocked gives the balancer the route table of every app.
func (s *Server) setRoutesLocked() error {
	var routes []lb.Route
	for _, a := range s.sortedAppsLocked() {
		cfg := &config.App{Name: a.name}
		cfg.Balancer.Hosts, cfg.Balancer.Path = a.hosts, a.path
		routes = append(routes, cfg.Routes()...)
	}
	if err := s.bal.SetRoutes(routes); err != nil {
		return fmt.Errorf("%w: %w", adminapi.ErrConflict, err)
	}
	return nil
}

// refreshRoutes sets app a's routes from the configuration of the release
// it serves now, after a deploy, rollback or env change: unchanged routes
// cost nothing; routes another app took meanwhile are kept as they were,
// with a warning.
func (s *Server) refreshRoutes(a *serverApp) {
	rel := a.ctl.Release()
	if rel.Version == 0 || rel.Config == "" {
		return
	}
	cfg, err := config.ParseSent(rel.ConfigFile, []byte(rel.Config))
	if err != nil {
		return
	}
	hosts, path := routeKey(cfg)
	s.appsMu.Lock()
	defer s.appsMu.Unlock()
	if slices.Equal(hosts, a.hosts) && path == a.path {
		return
	}
	if err := s.routeConflictLocked(a.name, cfg); err != nil {
		s.log.Warn("routes of the new release not set", "app", a.name, "release", rel.Version, "error", err)
		return
	}
	oldHosts, oldPath := a.hosts, a.path
	a.hosts, a.path = hosts, path
	if err := s.setRoutesLocked(); err != nil {
		a.hosts, a.path = oldHosts, oldPath
		s.log.Warn("routes of the new release not set", "app", a.name, "release", rel.Version, "error", err)
		return
	}
	s.log.Info("routes changed", "app", a.name, "release", rel.Version, "hosts", strings.Join(hosts, ","), "path", path)
}

// releaseCheck is how often watchRelease looks at the release without
// being woken by an event.
const releaseCheck = 2 * time.Second

// watchRelease follows a's controller until ctx ends: whenever the
// release it serves changes (a deploy or rollback through the API or the
// dashboard, a deploy resumed after a restart), it sets a's routes from
// that release (refreshRoutes) and says when the release's balancer
// settings differ from those of the app's pool (poolSettingsChanged).
func (s *Server) watchRelease(ctx context.Context, a *serverApp) {
	evs, unsubscribe := a.ctl.SubscribeEvents()
	defer unsubscribe()
	tick := time.NewTicker(releaseCheck)
	defer tick.Stop()
	seen := 0
	for {
		if v := a.ctl.Release().Version; v != seen {
			seen = v
			s.refreshRoutes(a)
			s.poolSettingsChanged(a)
		}
		select {
		case <-ctx.Done():
			return
		case <-evs:
		case <-tick.C:
		}
	}
}

// poolSettingsChanged records, as an event of the app and a warning, that
// the release a serves has balancer settings (algorithm, stickiness, slow
// start, drain timeout, protocol) other than those its pool was built with. They
// apply at the next start of the server, which builds the pool from the
// active release. The running pool is not rebuilt: the controller holds
// it and its targets' health and drain states, and a rebuilt pool starts
// empty (lb's Reload rebuilds a pool whose settings changed).
func (s *Server) poolSettingsChanged(a *serverApp) {
	rel := a.ctl.Release()
	if rel.Version == 0 || rel.Config == "" {
		return
	}
	cfg, err := config.ParseSent(rel.ConfigFile, []byte(rel.Config))
	if err != nil {
		return
	}
	pc, err := s.poolConfig(cfg)
	if err != nil {
		s.log.Warn("balancer settings of the new release not compared", "app", a.name, "release", rel.Version, "error", err)
		return
	}
	var changed []string
	if pc.Algorithm != a.pool.Algorithm {
		changed = append(changed, "algorithm")
	}
	if !reflect.DeepEqual(pc.Sticky, a.pool.Sticky) {
		changed = append(changed, "sticky")
	}
	if pc.SlowStart != a.pool.SlowStart {
		changed = append(changed, "slow_start")
	}
	if pc.DrainTimeout != a.pool.DrainTimeout {
		changed = append(changed, "drain_timeout")
	}
	if pc.Protocol != a.pool.Protocol {
		changed = append(changed, "protocol")
	}
	if len(changed) == 0 {
		return
	}
	reason := fmt.Sprintf("v%d changes balancer %s; the running pool keeps its settings until shoal server restarts, which applies them",
		rel.Version, strings.Join(changed, ", "))
	s.log.Warn("balancer settings apply at the next restart", "app", a.name, "release", rel.Version, "changed", strings.Join(changed, ","))
	if _, err := s.w.AppendEvent(a.name, api.Event{Type: "balancer", Release: rel.Version, Reason: reason}); err != nil {
		s.log.Warn("store event", "app", a.name, "error", err)
	}
}

// sortedAppsLocked returns the apps sorted by name.
func (s *Server) sortedAppsLocked() []*serverApp {
	out := make([]*serverApp, 0, len(s.apps))
	for _, a := range s.apps {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *serverApp) int { return strings.Compare(a.name, b.name) })
	return out
}

// app returns the app called name.
func (s *Server) app(name string) (*serverApp, bool) {
	s.appsMu.Lock()
	defer s.appsMu.Unlock()
	a, ok := s.apps[name]
	return a, ok
}

// createApp opens the app of cfg for its first deploy and waits until its
// controller has prepared (no release yet, nothing to run). An app of that
// name that exists already is returned as it is.
func (s *Server) createApp(ctx context.Context, cfg *config.App) (*serverApp, error) {
	s.appsMu.Lock()
	a, ok := s.apps[cfg.Name]
	if !ok {
		if s.running == nil {
			s.appsMu.Unlock()
			return nil, fmt.Errorf("app %s: %w", cfg.Name, controller.ErrNotRunning)
		}
		var err error
		if a, err = s.openAppLocked(cfg); err != nil {
			s.appsMu.Unlock()
			return nil, err
		}
		s.log.Info("app created by its first deploy", "app", cfg.Name)
	}
	s.appsMu.Unlock()
	select {
	case <-a.ctl.Ready():
		return a, nil
	case <-a.done:
		return nil, fmt.Errorf("app %s: %w", cfg.Name, controller.ErrNotRunning)
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// startApps starts the controller of every app under ctx and returns how
// many; apps created later start under it too, until stopApps.
func (s *Server) startApps(ctx context.Context) int {
	s.appsMu.Lock()
	defer s.appsMu.Unlock()
	s.running = ctx
	for _, a := range s.apps {
		s.startAppLocked(a)
	}
	return len(s.apps)
}

// startAppLocked runs a's controller in a goroutine that stopApps waits
// for, and while it runs its dashboard sampler (uisource.Source.Run) and
// its release watcher (watchRelease). A controller that fails is logged;
// the other apps go on.
func (s *Server) startAppLocked(a *serverApp) {
	ctx, cancel := context.WithCancel(s.running)
	a.stop = cancel
	s.appsWG.Add(1)
	go func() {
		defer s.appsWG.Done()
		defer close(a.done)
		sideCtx, stopSide := context.WithCancel(ctx)
		var side sync.WaitGroup
		side.Go(func() { a.ui.Run(sideCtx) })
		side.Go(func() { s.watchRelease(sideCtx, a) })
		defer side.Wait()
		defer stopSide()
		if err := a.ctl.Run(ctx); err != nil {
			s.log.Error("app stopped", "app", a.name, "error", err)
		}
	}()
}

// stopApps stops every controller, lets no app start any more, and waits
// until every controller's Run has returned.
func (s *Server) stopApps() {
	s.appsMu.Lock()
	s.running = nil
	for _, a := range s.apps {
		if a.stop != nil {
			a.stop()
		}
	}
	s.appsMu.Unlock()
	s.appsWG.Wait()
}

// keptArtifacts are the artifacts of every app's kept releases but app's
// own, which app's pruning must keep: the apps share one artifact store.
func (s *Server) keptArtifacts(app string) []string {
	groups, err := s.st.Groups()
	if err != nil {
		s.log.Warn("list apps for pruning", "error", err)
		return nil
	}
	var keep []string
	for _, g := range groups {
		if g.App == app {
			continue
		}
		rels, err := s.st.Releases(g.App)
		if err != nil {
			s.log.Warn("list releases for pruning", "app", g.App, "error", err)
			continue
		}
		for _, r := range rels {
			keep = append(keep, r.Digest)
		}
	}
	return keep
}

// summary is the app's line of GET /v1/apps.
func (a *serverApp) summary(hosts []string, path string) api.AppSummary {
	st := a.ctl.Status()
	return api.AppSummary{Name: a.name, Release: a.ctl.Release().Version, Desired: st.Desired, InService: st.InService,
		Instances: len(st.Instances), Hosts: hosts, Path: path, Deploying: a.ctl.Rollout() != nil}
}
