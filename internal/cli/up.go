package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/atomicfile"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/dashboard"
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
	storeFile    = "shoal.db"
	adminURLFile = "admin.url" // the admin API's real URL while up runs
	listenName   = "http"
)

// runUp is `shoal up [-c shoal.yaml]`.
func runUp(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	file := fs.String("c", config.AppFileName, "the app's configuration `file`")
	verbose := fs.Bool("v", false, "log debug detail")
	if err := fs.Parse(args); err != nil {
		return &UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadAppConfig(*file)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	return up(ctx, env, cfg, log)
}

// loadAppConfig loads shoal.yaml; any problem with it is a usage error
// (exit 2), reported with file:line:column.
func loadAppConfig(path string) (*config.App, error) {
	cfg, err := config.Load(path)
	if err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			return nil, &UsageError{Err: fmt.Errorf("invalid configuration:\n%w", err)}
		}
		return nil, &UsageError{Err: err}
	}
	return cfg, nil
}

func up(ctx context.Context, env *Env, cfg *config.App, log *slog.Logger) error {
	data := cfg.DataDir
	if err := prepareDataDir(data, log); err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(data, storeFile), store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()

	rt, err := runtime.NewLocal(runtime.Options{DataDir: data, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Run.StopTimeout.D()+10*time.Second)
		defer cancel()
		rt.Close(cctx)
	}()
	if err := rt.CleanLeftovers(ctx); err != nil {
		return fmt.Errorf("clean leftovers of an earlier run: %w", err)
	}
	token, err := adminapi.LoadOrCreateToken(filepath.Join(data, adminapi.TokenFile))
	if err != nil {
		return err
	}
	arts, err := release.Open(filepath.Join(data, "artifacts"), log)
	if err != nil {
		return err
	}
	if b := cfg.Build; b != nil {
		arts.SetLimits(release.Limits{MaxBytes: int64(b.MaxUnpackedSize), MaxEntries: b.MaxUnpackedFiles})
	}

	lbcfg, err := balancerConfig(cfg, st, log)
	if err != nil {
		return err
	}
	// The dashboard's request metrics, fed by the balancer.
	series := timeseries.NewStore(timeseries.Options{})
	slow := timeseries.NewSlow(timeseries.SlowOptions{})
	held := timeseries.NewStore(timeseries.Options{MaxRoutes: 1})
	lbcfg.Observer = &uisource.Observer{Series: series, Slow: slow, Held: held}
	bal, err := lb.New(lbcfg)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("balancer: %w", err)}
	}
	if err := bal.Listen(); err != nil {
		return fmt.Errorf("balancer: %w", err)
	}
	p, ok := bal.Pool(cfg.Name)
	if !ok {
		return fmt.Errorf("balancer has no pool %q", cfg.Name)
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin api: %w", err)
	}
	defer adminLn.Close()
	adminURL := "http://" + adminLn.Addr().String()
	lbURL := "http://" + bal.Addr(listenName).String()
	urlFile := filepath.Join(data, adminURLFile)
	if err := atomicfile.Write(urlFile, []byte(adminURL+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin url: %w", err)
	}
	defer os.Remove(urlFile)

	host := controller.NewLocalHost(rt, arts, filepath.Join(data, "releases"))
	ctl, err := controller.New(controller.Options{
		Config: cfg, Store: st, Artifacts: arts, Pool: p, Logger: log, BuildLog: env.Stderr, Console: env.Stderr,
		Host:    host,
		Latency: func() ([]float64, []uint64) { return bal.LatencyHistogram(cfg.Name) },
	})
	if err != nil {
		return err
	}
	uiSrc, err := uisource.New(uisource.Options{Controller: ctl, Host: host, Pool: p, Store: st,
		Series: series, Slow: slow, Held: held, HeldOpen: func() int { return bal.HeldOpen(cfg.Name) },
		Logger: log.With("part", "dashboard")})
	if err != nil {
		return err
	}
	ui := dashboard.New(dashboard.Options{Token: token, Source: uiSrc, Logger: log.With("part", "dashboard")})
	mux := http.NewServeMux()
	adminapi.LBRoutes(mux, bal, nil)
	adminapi.ControllerRoutes(mux, ctl, adminapi.WithBalancer(bal))
	adminapi.DeployRoutes(mux, ctl)
	adminapi.AutoscaleRoutes(mux, ctl)
	// The dashboard logs in with the token itself (session cookie, CSRF),
	// so it sits outside the API's bearer-token check.
	root := http.NewServeMux()
	root.Handle("/ui/", ui)
	root.Handle("/", adminapi.RequireToken(token, adminapi.WithMetrics(mux, ctl.Metrics())))
	srv := &http.Server{Handler: adminapi.WithApp(cfg.Name, root), ReadHeaderTimeout: 10 * time.Second}

	// Shutdown order: the controller drains and stops the instances while
	// the balancer and the admin API still run; then they stop.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	lbCtx, stopLB := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLB()
	var g errgroup.Group
	g.Go(func() error {
		defer stopLB()
		return ctl.Run(runCtx)
	})
	g.Go(func() error {
		err := bal.Run(lbCtx)
		if err != nil {
			stopRun()
		}
		return err
	})
	g.Go(func() error {
		err := srv.Serve(adminLn)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		stopRun()
		return fmt.Errorf("admin api: %w", err)
	})
	g.Go(func() error { return uiSrc.Run(lbCtx) })
	g.Go(func() error {
		<-lbCtx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ui.Close() // ends the dashboard's live streams, which Shutdown does not
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		return nil
	})
	g.Go(func() error {
		select {
		case <-ctl.Ready():
			rel := ctl.Release()
			fmt.Fprintf(env.Stdout, "shoal up: app %s release v%d serving on %s (admin %s)\n", cfg.Name, rel.Version, lbURL, adminURL)
			fmt.Fprintf(env.Stdout, "shoal up: dashboard %s/ui/\n", adminURL)
			for _, note := range ctl.StartNotes() { // the app folder differs from the resumed release
				fmt.Fprintf(env.Stdout, "shoal up: %s\n", note)
			}
		case <-lbCtx.Done():
		}
		return nil
	})
	err = g.Wait()
	if err == nil {
		fmt.Fprintln(env.Stdout, "shoal up: stopped")
	}
	return err
}

// balancerConfig builds the balancer of `shoal up`: one listener, one
// route "/" to one pool named after the app, no static targets (the
// controller adds instances as they come into service) and no active
// checks of its own (the controller checks instances).
func balancerConfig(cfg *config.App, st *store.Store, log *slog.Logger) (lb.Config, error) {
	b := cfg.Balancer
	alg, err := pool.ParseAlgorithm(b.Algorithm)
	if err != nil {
		return lb.Config{}, &UsageError{Err: err}
	}
	pc := lb.PoolConfig{Name: cfg.Name, Algorithm: alg, SlowStart: b.SlowStart.D(), DrainTimeout: b.DrainTimeout.D()}
	if s := b.Sticky; s != nil {
		pc.Sticky = pool.Sticky{Cookie: s.Cookie, TTL: s.TTL.D(), SockJSPrefixes: s.SockJSPrefixes}
		if s.Cookie != "" {
			// The signing key is balancer.sticky.secret_file's, or else
			// generated once and kept, so pins survive a restart of shoal.
			key := s.Secret()
			if key == nil {
				if key, err = st.Key("sticky-"+cfg.Name, 32); err != nil {
					return lb.Config{}, err
				}
			}
			pc.Sticky.Secret = key
		}
	}
	return lb.Config{
		Listeners: []lb.Listener{{Name: listenName, Addr: b.Listen}},
		Routes:    []lb.Route{{Name: cfg.Name, PathPrefix: "/", Pool: cfg.Name, LongLivedPaths: b.LongLivedPaths}},
		Pools:     []lb.PoolConfig{pc},
		Logger:    log.With("part", "lb"),
	}, nil
}
