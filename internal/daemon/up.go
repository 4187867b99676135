package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/atomicfile"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/timeseries"
	"github.com/shoal-dev/shoal/internal/uisource"
)

// Files under the data directory that belong to `shoal up`.
const (
	// StoreFile is the store (bbolt) of desired state.
	StoreFile = "shoal.db"
	// AdminURLFile holds the admin API's real URL while `shoal up` runs,
	// for the client verbs; it is removed when Up stops.
	AdminURLFile = "admin.url"
)

// UpOptions configures OpenUp.
type UpOptions struct {
	// Config is the loaded, validated shoal.yaml. Required.
	Config *config.App
	// Logger receives the logs of every part; nil discards them.
	Logger *slog.Logger
	// Console receives the build output and the crash reports meant for
	// the person at the terminal (`shoal up`'s stderr); nil discards them.
	Console io.Writer
	// OnReady, when set, is called once from a goroutine of Run when the
	// group first serves; it is not called when Run ends before that.
	OnReady func(Ready)
}

// Ready says where a started `shoal up` serves; UpOptions.OnReady gets it.
type Ready struct {
	App         string
	Release     int    // version of the release in service
	BalancerURL string // http://host:port of the balancer
	AdminURL    string // http://host:port of the admin API; the dashboard is at /ui/
	// Notes are the differences between the app folder and the resumed
	// release (controller.StartNotes), for the operator.
	Notes []string
}

// Up is a running `shoal up`: a controller, its instances on this host,
// the balancer in front of them, the admin API and the dashboard, in one
// process. Open it with OpenUp, then call Run once (or Close).
type Up struct {
	opts UpOptions
	cfg  *config.App
	log  *slog.Logger

	st      *store.Store
	rt      *runtime.Local
	eng     *dockerrt.Engine // runtime: docker only
	bal     *lb.Balancer
	ctl     *controller.Controller
	uiSrc   *uisource.Source
	ui      *dashboard.Handler
	adminLn net.Listener
	admin   *http.Server

	// started is set by the first of Run and Close.
	started atomic.Bool
	// undo releases what OpenUp acquired, last first; done makes that
	// happen once.
	undo []func(ctx context.Context)
	done sync.Once
}

// OpenUp builds every part of `shoal up` from opts.Config and binds the
// balancer's and the admin API's listeners, so that a port in use is an
// error here. It prepares the data directory (mode 0700), opens the store
// (holding its lock), cleans up instances left by an earlier run and
// writes AdminURLFile. On error everything opened so far is released. A
// balancer configuration that lb.New rejects is a *ConfigError.
func OpenUp(ctx context.Context, opts UpOptions) (_ *Up, err error) {
	if opts.Config == nil {
		return nil, errors.New("daemon: OpenUp needs UpOptions.Config")
	}
	u := &Up{opts: opts, cfg: opts.Config, log: opts.Logger}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	if u.opts.Console == nil {
		u.opts.Console = io.Discard
	}
	defer func() {
		if err != nil {
			u.release(ctx)
		}
	}()
	token, arts, err := u.openState(ctx)
	if err != nil {
		return nil, err
	}
	metrics := newDashboardMetrics()
	if err := u.buildBalancer(metrics.observer()); err != nil {
		return nil, err
	}
	p, ok := u.bal.Pool(u.cfg.Name)
	if !ok {
		return nil, fmt.Errorf("balancer has no pool %q", u.cfg.Name)
	}
	if u.adminLn, err = net.Listen("tcp", u.cfg.Admin.Listen); err != nil {
		return nil, fmt.Errorf("admin api: %w", err)
	}
	u.onRelease(func(context.Context) { u.adminLn.Close() })
	if err := u.buildController(arts, p, token, metrics); err != nil {
		return nil, err
	}
	if err := u.writeAdminURL(); err != nil {
		return nil, err
	}
	// Last: lb.Balancer releases bound sockets only by running (see
	// Close), so nothing may fail after this.
	if err := u.bal.Listen(); err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	return u, nil
}

// openState prepares the data directory and opens the durable parts: the
// store, the runtime (which kills leftovers of an earlier run), the admin
// token and the artifact store.
func (u *Up) openState(ctx context.Context) (token string, arts *release.Store, err error) {
	data := u.cfg.DataDir
	if err := prepareDataDir(data, u.log); err != nil {
		return "", nil, err
	}
	u.st, err = store.Open(filepath.Join(data, StoreFile), store.Options{Logger: u.log})
	if err != nil {
		return "", nil, err
	}
	u.onRelease(func(context.Context) { u.st.Close() })
	u.rt, err = runtime.NewLocal(runtime.Options{DataDir: data, Logger: u.log})
	if err != nil {
		return "", nil, err
	}
	u.onRelease(func(ctx context.Context) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.cfg.Run.StopTimeout.D()+10*time.Second)
		defer cancel()
		u.rt.Close(cctx)
	})
	if err := u.rt.CleanLeftovers(ctx); err != nil {
		return "", nil, fmt.Errorf("clean leftovers of an earlier run: %w", err)
	}
	if u.cfg.Docker() {
		if err := u.openEngine(ctx); err != nil {
			return "", nil, err
		}
	}
	token, err = adminapi.LoadOrCreateToken(filepath.Join(data, adminapi.TokenFile))
	if err != nil {
		return "", nil, err
	}
	arts, err = release.Open(filepath.Join(data, "artifacts"), u.log)
	if err != nil {
		return "", nil, err
	}
	if b := u.cfg.Build; b != nil {
		arts.SetLimits(release.Limits{MaxBytes: int64(b.MaxUnpackedSize), MaxEntries: b.MaxUnpackedFiles})
	}
	return token, arts, nil
}

// buildBalancer builds the balancer from shoal.yaml
// (config.App.BalancerConfig), with the sticky cookie's key from
// balancer.sticky.secret_file, or else kept in the store so that pins
// survive a restart of shoal.
func (u *Up) buildBalancer(obs lb.RequestObserver) error {
	var key []byte
	if u.cfg.Balancer.NeedsStickyKey() {
		// balancer.sticky.secret_file's key when set (shared by every
		// balancer of a fleet), else one generated once and kept.
		if key = u.cfg.Balancer.Sticky.Secret(); key == nil {
			var err error
			if key, err = u.st.Key(config.StickyKeyName(u.cfg.Name), 32); err != nil {
				return err
			}
		}
	}
	lbcfg := u.cfg.BalancerConfig(key, u.log.With("part", "lb"))
	lbcfg.Observer = obs
	bal, err := lb.New(lbcfg)
	if err != nil {
		return &ConfigError{Err: fmt.Errorf("balancer: %w", err)}
	}
	u.bal = bal
	return nil
}

// buildController builds the controller on the local host and the admin
// HTTP server: the API behind the bearer token, /metrics, and the
// dashboard at /ui/.
func (u *Up) buildController(arts *release.Store, p *pool.Pool, token string, m *dashboardMetrics) error {
	cfg, data := u.cfg, u.cfg.DataDir
	var host controller.Host = controller.NewLocalHost(u.rt, arts, filepath.Join(data, "releases"))
	if u.eng != nil {
		host = controller.NewDockerHost(u.eng, arts, host.(*controller.LocalHost))
	}
	ctl, err := controller.New(controller.Options{
		Config: cfg, Store: u.st, Artifacts: arts, Pool: p, Logger: u.log,
		BuildLog: u.opts.Console, Console: u.opts.Console,
		Host:    host,
		Latency: func() ([]float64, []uint64) { return u.bal.LatencyHistogram(cfg.Name) },
	})
	if err != nil {
		return err
	}
	u.ctl = ctl
	u.uiSrc, err = uisource.New(uisource.Options{Controller: ctl, Host: host, Pool: p, Store: u.st,
		Series: m.series, Slow: m.slow, Held: m.held, PageLoad: m.pageLoad, HeldOpen: func() int { return u.bal.HeldOpen(cfg.Name) },
		Logger: u.log.With("part", "dashboard")})
	if err != nil {
		return err
	}
	u.ui = dashboard.New(dashboard.Options{Token: token, Source: u.uiSrc, Logger: u.log.With("part", "dashboard")})
	u.admin = &http.Server{Handler: u.adminHandler(token), ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// adminHandler routes the admin listener: the dashboard logs in with the
// token itself (session cookie, CSRF), so it sits outside the API's
// bearer-token check; every other path needs the token.
func (u *Up) adminHandler(token string) http.Handler {
	mux := http.NewServeMux()
	adminapi.LBRoutes(mux, u.bal, nil)
	adminapi.ControllerRoutes(mux, u.ctl, adminapi.WithBalancer(u.bal))
	adminapi.DeployRoutes(mux, u.ctl)
	adminapi.AutoscaleRoutes(mux, u.ctl)
	root := http.NewServeMux()
	root.Handle("/ui/", u.ui)
	root.Handle("/", adminapi.RequireToken(token, adminapi.WithMetrics(mux, u.ctl.Metrics())))
	return adminapi.WithApp(u.cfg.Name, root)
}

// writeAdminURL writes AdminURLFile, removed again when Up is released.
func (u *Up) writeAdminURL() error {
	urlFile := filepath.Join(u.cfg.DataDir, AdminURLFile)
	if err := atomicfile.Write(urlFile, []byte(u.adminURL()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin url: %w", err)
	}
	u.onRelease(func(context.Context) { os.Remove(urlFile) })
	return nil
}

// Addr returns the address the balancer listens on.
func (u *Up) Addr() net.Addr { return u.bal.Addr(config.UpListener) }

// AdminAddr returns the address the admin API and the dashboard listen on.
func (u *Up) AdminAddr() net.Addr { return u.adminLn.Addr() }

func (u *Up) adminURL() string { return "http://" + u.adminLn.Addr().String() }

// Run runs the controller, the balancer, the admin API and the dashboard
// until ctx ends or one of them fails, then stops them in order: the
// controller drains and stops the instances while the balancer and the
// admin API still run; then the dashboard's streams, the admin API and the
// balancer stop. It returns after every goroutine has ended and every part
// OpenUp acquired is released; nil after a stop through ctx.
func (u *Up) Run(ctx context.Context) error {
	if !u.started.CompareAndSwap(false, true) {
		return errors.New("shoal up already ran or was closed")
	}
	defer u.release(ctx)
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	lbCtx, stopLB := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLB()
	var g errgroup.Group
	g.Go(func() error {
		defer stopLB()
		return u.ctl.Run(runCtx)
	})
	g.Go(func() error {
		err := u.bal.Run(lbCtx)
		if err != nil {
			stopRun()
		}
		return err
	})
	g.Go(func() error {
		err := u.admin.Serve(u.adminLn)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		stopRun()
		return fmt.Errorf("admin api: %w", err)
	})
	g.Go(func() error { return u.uiSrc.Run(lbCtx) })
	g.Go(func() error {
		<-lbCtx.Done()
		u.shutdownAdmin()
		return nil
	})
	g.Go(func() error {
		u.announce(lbCtx)
		return nil
	})
	return g.Wait()
}

// shutdownAdmin ends the dashboard's live streams, which Shutdown does not
// end, then the admin server, closing what is left after 2 s.
func (u *Up) shutdownAdmin() {
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u.ui.Close()
	if err := u.admin.Shutdown(sctx); err != nil {
		u.admin.Close()
	}
}

// announce calls OnReady once the controller is ready, unless ctx ends
// first.
func (u *Up) announce(ctx context.Context) {
	select {
	case <-u.ctl.Ready():
		if u.opts.OnReady != nil {
			u.opts.OnReady(Ready{
				App:         u.cfg.Name,
				Release:     u.ctl.Release().Version,
				BalancerURL: "http://" + u.Addr().String(),
				AdminURL:    u.adminURL(),
				Notes:       u.ctl.StartNotes(),
			})
		}
	case <-ctx.Done():
	}
}

// Close releases an Up that was opened and is not run: the balancer's and
// the admin API's sockets, the admin URL file, the runtime and the store.
// Run releases them itself; Close after Run does nothing.
func (u *Up) Close() {
	if u.started.CompareAndSwap(false, true) {
		// lb.Balancer has no Close: a Run with an ended context starts
		// and at once stops it, closing its sockets.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		u.bal.Run(ctx)
	}
	u.release(context.Background())
}

// openEngine connects to the Docker engine of an app with runtime:
// docker (DOCKER_HOST, else /var/run/docker.sock) and removes the
// containers an earlier run of this data directory left (one killed
// before it could stop them). Its containers are stopped and removed when
// Up is released.
func (u *Up) openEngine(ctx context.Context) error {
	cli, err := dockerrt.Connect(ctx, 10*time.Second)
	if err != nil {
		return fmt.Errorf("runtime: docker: %w", err)
	}
	eng, err := dockerrt.New(ctx, cli, dockerrt.Options{Scope: u.cfg.DataDir, Logger: u.log.With("part", "docker")})
	if err != nil {
		cli.Close()
		return fmt.Errorf("runtime: docker: %w", err)
	}
	u.eng = eng
	u.onRelease(func(ctx context.Context) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.cfg.Run.StopTimeout.D()+30*time.Second)
		defer cancel()
		if err := eng.Close(cctx); err != nil {
			u.log.Warn("docker engine close", "error", err)
		}
	})
	return nil
}

func (u *Up) onRelease(f func(ctx context.Context)) { u.undo = append(u.undo, f) }

func (u *Up) release(ctx context.Context) {
	u.done.Do(func() {
		for i := len(u.undo) - 1; i >= 0; i-- {
			u.undo[i](ctx)
		}
	})
}

// dashboardMetrics are the dashboard's request series, fed by the
// balancer through a uisource.Observer.
type dashboardMetrics struct {
	series, held *timeseries.Store
	slow         *timeseries.Slow
	pageLoad     *timeseries.PageLoad
}

func newDashboardMetrics() *dashboardMetrics {
	return &dashboardMetrics{
		series: timeseries.NewStore(timeseries.Options{}),
		slow:   timeseries.NewSlow(timeseries.SlowOptions{}),
		held:   timeseries.NewStore(timeseries.Options{MaxRoutes: 1}),
		// The page-load report counts from the process's start.
		pageLoad: timeseries.NewPageLoad(time.Now()),
	}
}

func (m *dashboardMetrics) observer() *uisource.Observer {
	return &uisource.Observer{Series: m.series, Slow: m.slow, Held: m.held, PageLoad: m.pageLoad}
}
