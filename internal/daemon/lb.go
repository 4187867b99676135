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
	"os/signal"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/lb"
)

// LBOptions configures OpenLB.
type LBOptions struct {
	// Path is the lb.yaml the balancer runs from, read again on every
	// reload (SIGHUP or the admin API). Required.
	Path string
	// File is Path as loaded and validated by config.LoadLB. Required.
	File *config.LBFile
	// Logger receives the balancer's and the daemon's logs; nil discards
	// them.
	Logger *slog.Logger
	// Context bounds the join of a balancer node (File.Server) at its
	// first start; nil means context.Background (the join's own bound,
	// a minute, still applies).
	Context context.Context
}

// LB is a running `shoal lb`: one balancer and its admin API (on TCP or a
// Unix socket) from lb.yaml, reloaded on SIGHUP. With lb.yaml's server
// section it is a balancer node that follows a `shoal server`
// (lbfollow.go): its routes, pools and targets are the server's. Open it
// with OpenLB, then call Run once (or Close).
type LB struct {
	path    string
	follow  *lbFollower // nil for a static balancer
	vip     *vipKeeper  // nil without lb.yaml's vip section
	log     *slog.Logger
	b       *lb.Balancer
	adminLn net.Listener
	admin   *http.Server
	hup     chan os.Signal
	usr2    chan os.Signal // upgrade: start the binary again (watchUpgrade)
	started atomic.Bool    // set by the first of Run and Close

	// Listener handoff (handoff.go, lb_handoff.go).
	adminAddr string // the admin API's configured address, "unix:" + path for a socket
	handoff   handoffServer
	inh       *inherited // what was taken over from an old process; nil if none
	cancel    context.CancelFunc

	// mu serialises reloads (SIGHUP and the admin API) and guards the
	// access log writers.
	mu         sync.Mutex
	accessPath string
	accessW    io.Writer   // nil when off
	accessSet  bool        // accessW and accessPath are set
	logs       []io.Closer // every access log opened; closed at exit
}

// OpenLB builds the balancer of opts.File, loads (or creates) the admin
// token, opens the access log and binds the admin API's and the
// balancer's listeners, so that a port in use is an error here; then it
// catches SIGHUP and logs each listener's address ("listening"). On error
// everything opened so far is released. A configuration that lb.New
// rejects is a *ConfigError.
func OpenLB(opts LBOptions) (_ *LB, err error) {
	if opts.File == nil || opts.Path == "" {
		return nil, errors.New("daemon: OpenLB needs LBOptions.Path and File")
	}
	d := &LB{path: opts.Path, log: opts.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	file := opts.File
	d.warn(file)
	token, err := adminapi.LoadOrCreateToken(file.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	defer func() {
		if err != nil {
			d.closeLogs()
		}
	}()
	cfg, err := d.prepare(file)
	if err != nil {
		return nil, err
	}
	if d.b, err = lb.New(cfg); err != nil {
		return nil, &ConfigError{Err: fmt.Errorf("%s: %w", d.path, err)}
	}
	if file.Server != nil {
		ctx := opts.Context
		if ctx == nil {
			ctx = context.Background()
		}
		if d.follow, err = openFollower(ctx, file.Server, d.path, d.log); err != nil {
			return nil, err
		}
		// lb.yaml's part is valid (above); what the state file adds is
		// the state file's.
		full, err := d.follow.initialConfig(cfg)
		if err == nil {
			d.b, err = lb.New(full)
		}
		if err == nil {
			// The last certificates obtained by the server, served while
			// it cannot be reached (challenges are not: they are done).
			err = d.b.SetCertificates(managedCertsOf(d.follow.cfg.Certificates))
		}
		if err != nil {
			return nil, &DamagedStateError{Path: d.follow.state, Err: err}
		}
		d.follow.b = d.b
	}
	if file.VIP != nil {
		// Before the takeover (bindAll): the running keepalived's guard
		// is joined while the old process still holds it, so keepalived
		// and the address stay through the handoff. Without one, a stale
		// address is cleared here, before keepalived can run.
		if d.vip, err = openVIP(*file.VIP, d.log); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				d.vip.close()
			}
		}()
	}
	if err := d.bindAll(cfg, file.Admin); err != nil {
		return nil, err
	}
	if d.vip != nil {
		d.vip.setCheck(d.adminLn.Addr(), token)
	}
	// Catch SIGHUP before announcing the listeners: whoever reads those
	// lines may send one at once, and its default action is to exit.
	d.hup = make(chan os.Signal, 1)
	signal.Notify(d.hup, syscall.SIGHUP)
	d.usr2 = make(chan os.Signal, 1)
	signal.Notify(d.usr2, syscall.SIGUSR2)
	d.logListening(cfg, file.Admin)

	mux := http.NewServeMux()
	adminapi.LBRoutes(mux, d.b, d.Reload)
	d.admin = &http.Server{
		Handler:           adminapi.RequireToken(token, mux),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	return d, nil
}

// bindAll opens every socket of the daemon: those an old process on the
// handoff socket hands over when one runs (handoff.go), the others bound
// anew. On error nothing stays open and the old process serves on.
func (d *LB) bindAll(cfg lb.Config, a config.AdminConfig) (err error) {
	path := HandoffSocketPath(d.path)
	if d.inh, err = takeover(path); err != nil {
		return fmt.Errorf("take over from the running balancer: %w", err)
	}
	var closers []func() error
	defer func() {
		if err != nil {
			for _, c := range closers {
				c()
			}
			d.inh.close()
			d.inh = nil
		}
	}()
	d.adminAddr = a.Addr
	if a.Addr == "" {
		d.adminAddr = "unix:" + a.Socket
	}
	if d.adminLn = d.inh.claim(handoffAdmin, "", d.adminAddr); d.adminLn == nil {
		// Bound first: a failure then leaves nothing of the balancer's to
		// release.
		if d.adminLn, err = listenAdmin(a); err != nil {
			return fmt.Errorf("admin listen: %w", err)
		}
	}
	closers = append(closers, d.adminLn.Close)
	ln, err := d.inh.listenSelf(path)
	if err != nil {
		return err
	}
	d.handoff = handoffServer{ln: ln, path: path, log: d.log, owner: d}
	closers = append(closers, ln.Close)
	socks := map[string]*net.TCPListener{}
	for _, l := range cfg.Listeners {
		tl, err := d.inh.claimTCP(handoffListener, l.Name, l.Addr)
		if err != nil {
			for _, s := range socks {
				s.Close()
			}
			return fmt.Errorf("listener %s: %w", l.Name, err)
		}
		if tl != nil {
			socks[l.Name] = tl
		}
	}
	// Sockets of listeners removed or moved stay the old process's.
	d.inh.closeUnclaimed()
	if err := d.b.ListenOn(socks); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}

// logListening logs the address of every listener; tests and scripts read
// the real ports of ":0" listeners from these lines.
func (d *LB) logListening(cfg lb.Config, a config.AdminConfig) {
	for _, l := range cfg.Listeners {
		d.log.Info("listening", "listener", l.Name, "addr", d.b.Addr(l.Name).String(), "tls", len(l.TLS) > 0)
	}
	if d.follow != nil {
		d.log.Info("following", "server", d.follow.servers.current(), "servers", len(d.follow.srv.URLs), "node", d.follow.node.Identity().Name, "dir", d.follow.srv.DataDir)
	}
	if a.Addr != "" {
		d.log.Info("listening", "listener", "admin", "addr", d.adminLn.Addr().String(), "token_file", a.TokenFile)
	} else {
		d.log.Info("listening", "listener", "admin", "socket", a.Socket, "token_file", a.TokenFile)
	}
}

// Addr returns the address of the balancer's listener name; nil for an
// unknown name.
func (d *LB) Addr(name string) net.Addr { return d.b.Addr(name) }

// AdminAddr returns the address of the admin API (a Unix socket's path
// when admin.addr is not set).
func (d *LB) AdminAddr() net.Addr { return d.adminLn.Addr() }

// Run serves until ctx ends or the balancer or the admin server fails,
// reloading on SIGHUP; then the balancer drains and the admin server shuts
// down (5 s of grace for waiting drains, then closed). It returns after
// every goroutine has ended and the access logs are closed; nil after a
// stop through ctx.
func (d *LB) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("shoal lb already ran or was closed")
	}
	defer d.closeLogs()
	defer signal.Stop(d.hup)
	defer signal.Stop(d.usr2)
	ctx, d.cancel = context.WithCancel(ctx)
	debug.FreeOSMemory()
	defer d.cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		d.handoff.serve(gctx)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		d.handoff.ln.Close()
		return nil
	})
	g.Go(func() error {
		watchUpgrade(gctx, d.usr2, d.log)
		return nil
	})
	g.Go(func() error {
		d.ready(gctx)
		return nil
	})
	g.Go(func() error {
		// Loading lb.yaml is the largest allocation a balancer makes (about
		// 2 KB of garbage per route); once it serves, give that back to the
		// system at once instead of over the scavenger's minutes (issue 15:
		// memory per host route).
		select {
		case <-d.b.Serving():
			debug.FreeOSMemory()
		case <-gctx.Done():
		}
		return nil
	})
	g.Go(func() error {
		if err := d.b.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("balancer: %w", err)
		}
		return nil
	})
	// Waits on wait=true drains end with their clients' contexts; Close
	// stops those that outlive the grace period.
	serveUntilDone(gctx, g, d.admin, d.adminLn, "admin server", 5*time.Second)
	g.Go(func() error {
		d.watchHangup(gctx)
		return nil
	})
	if d.follow != nil {
		g.Go(func() error { return d.follow.run(gctx) })
	}
	if d.vip != nil {
		// keepalived starts once the balancer serves: its check asks the
		// admin API, which answers from here on.
		g.Go(func() error { return d.vip.run(gctx) })
	}
	err := g.Wait()
	if err == nil {
		d.log.Info("stopped")
	}
	return err
}

// Close releases an LB that was opened and is not run: its sockets, the
// SIGHUP handler and the access logs. Close after Run does nothing.
func (d *LB) Close() {
	if !d.started.CompareAndSwap(false, true) {
		return
	}
	signal.Stop(d.hup)
	signal.Stop(d.usr2)
	d.adminLn.Close()
	d.handoff.ln.Close()
	d.inh.close()
	if d.vip != nil {
		d.vip.close()
	}
	// lb.Balancer has no Close: a Run with an ended context starts and at
	// once stops it, closing its sockets.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d.b.Run(ctx)
	d.closeLogs()
}

// watchHangup reloads the configuration on every SIGHUP until ctx ends.
func (d *LB) watchHangup(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.hup:
			if err := d.Reload(ctx); err != nil {
				d.log.Error("reload rejected; the running configuration is kept", "file", d.path, "error", err)
			}
		}
	}
}

// Reload re-reads the configuration file and swaps it in. On any error
// the running configuration stays. Safe for concurrent use (the admin API
// and SIGHUP call it).
func (d *LB) Reload(ctx context.Context) error {
	file, err := config.LoadLB(d.path)
	if err != nil {
		return err
	}
	d.warn(file)
	if (file.Server == nil) != (d.follow == nil) || (file.Server != nil && !reflect.DeepEqual(*file.Server, *d.follow.srv)) {
		return fmt.Errorf("reload rejected: %s: a change of the server section (following a server or not, its url, name or data dir) needs a restart", d.path)
	}
	if !reflect.DeepEqual(file.VIP, d.vipConfig()) {
		return fmt.Errorf("reload rejected: %s: a change of the vip section needs a restart (keepalived is started with it)", d.path)
	}
	cfg, err := d.prepare(file)
	if err != nil {
		return err
	}
	if d.follow != nil {
		err = d.follow.reload(cfg)
	} else {
		err = d.b.Reload(cfg)
	}
	if err != nil {
		return err
	}
	d.log.Info("reloaded", "file", d.path, "listeners", len(cfg.Listeners), "routes", len(cfg.Routes), "pools", len(cfg.Pools))
	return nil
}

// vipConfig is the vip section the balancer runs with; nil without one.
func (d *LB) vipConfig() *config.LBVIP {
	if d.vip == nil {
		return nil
	}
	c := d.vip.cfg
	return &c
}

// warn logs each deprecated key of the file, with its file:line:col and
// the key to write instead.
func (d *LB) warn(file *config.LBFile) {
	for _, w := range file.Warnings {
		d.log.Warn("deprecated configuration key", "warning", w.String())
	}
}
