package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-dev/shoal/internal/acme"
	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/atomicfile"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/hostpool"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/uisource"
)

// ServerListener is the name of the one balancer listener of `shoal
// server`, as lb.Balancer.Addr and the balancer's status name it.
const ServerListener = "http"

// ServerOptions configures OpenServer.
type ServerOptions struct {
	// Config is the loaded, validated server.yaml. Required.
	Config *config.ServerFile
	// Logger receives the logs of every part; nil discards them.
	Logger *slog.Logger
	// OnReady, when set, is called once from a goroutine of Run when the
	// server serves: every listener bound, the fleet followed and every
	// stored app's controller started. It is not called when Run ends
	// before that.
	OnReady func(ServerReady)
}

// ServerReady says where a started `shoal server` serves.
type ServerReady struct {
	AdminURL    string // http://host:port on loopback, else https://
	FleetURL    string // https://host:port agents join and talk to
	BalancerURL string // http://host:port of the balancer
	// BalancerTLSURL is https://host:port of balancer.tls_listen; "" without one.
	BalancerTLSURL string
	CAPin          string // the fleet CA's pin (pki.CA.Pin), for --ca-pin and join tokens
	Apps           int    // apps reopened from the store
}

// Server is a running `shoal server`: the store, the fleet CA and its
// join protocol, the fleet's registry and scheduler (fleet.Fleet), one
// balancer in front of every app, one controller per app on the fleet's
// hosts, and the admin API. Open it with OpenServer, then call Run once
// (or Close).
//
// What owns what: the Server owns the listeners, the store (and in it
// every app's desired state, the hosts, the join tokens and the events),
// the CA, the artifact store (one for every app, with one Uploads) and
// the app registry (apps.go); each app's controller owns its group and
// its pool's membership; the fleet owns the hosts and the placement of
// instances on them.
type Server struct {
	opts ServerOptions
	cfg  *config.ServerFile
	log  *slog.Logger

	st *store.Store
	// w takes the server's writes of desired state: st itself (this
	// server alone), or the cluster's writer (server_cluster.go).
	w     store.Writer
	ca    *pki.CA
	pki   *pki.Server
	nodes *storedNodes
	// fleetp is the fleet's registry (fleet()): made at open for a
	// server alone; in a cluster, made anew each time this server leads
	// and nil while it follows (server_cluster.go).
	fleetp atomic.Pointer[fleet.Fleet]
	// cl is the Raft cluster this server is one of; nil alone.
	cl *clusterState
	// pools are the elastic hosts of host_pools (server_hostpools.go).
	pools   []*hostpool.Pool
	arts    *release.Store
	uploads *controller.Uploads
	// fleetEvents stores the fleet's events from a goroutine of Run, so
	// that fleet.Options.OnEvent returns at once.
	fleetEvents *controller.EventWriter
	bal         *lb.Balancer
	lbs         *lbStream     // the configuration balancer nodes follow (server_lbstream.go)
	acme        *acme.Manager // nil without balancer.acme (server_acme.go)
	token       string
	fleetURL    string

	adminLn, fleetLn net.Listener
	adminTLS         bool
	ho               serverHandoff // the listener handoff (server_handoff.go)
	admin, fleetSrv  *http.Server

	// The dashboard (server_ui.go): every app's Source in uiApps, the
	// request series the balancer's observer feeds in dash.
	dash   *dashboardMetrics
	uiApps *uisource.Apps
	ui     *dashboard.Handler

	// apps is the app registry (apps.go); appsMu also serialises the
	// creation of apps and the changes of the balancer's routes.
	appsMu  sync.Mutex
	apps    map[string]*serverApp
	running context.Context // the controllers' context while Run runs; nil otherwise
	appsWG  sync.WaitGroup  // the controllers' Run goroutines

	started atomic.Bool
	undo    []func(ctx context.Context)
	done    sync.Once
}

// OpenServer builds every part of `shoal server` from opts.Config and
// binds the admin, fleet and balancer listeners, so that a port in use is
// an error here naming it. It prepares the data directory (mode 0700),
// opens the store (holding its lock), loads or creates the fleet CA
// (<data_dir>/ca), writes the admin token (adminapi.TokenFile) and
// AdminURLFile, and opens every app stored with an active release from
// that release's configuration (nothing runs before Run). On error
// everything opened so far is released.
func OpenServer(ctx context.Context, opts ServerOptions) (_ *Server, err error) {
	if opts.Config == nil {
		return nil, errors.New("daemon: OpenServer needs ServerOptions.Config")
	}
	s := &Server{opts: opts, cfg: opts.Config, log: opts.Logger, apps: map[string]*serverApp{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			s.release(ctx)
		}
	}()
	if err := s.fetchClusterCA(ctx); err != nil { // server_cluster_join.go
		return nil, err
	}
	if err := s.openState(); err != nil {
		return nil, err
	}
	if err := s.openCluster(); err != nil { // server_cluster.go
		return nil, err
	}
	if err := s.addToCluster(ctx); err != nil { // server_cluster_join.go
		return nil, err
	}
	if err := s.openFleet(); err != nil {
		return nil, err
	}
	if err := s.openHostPools(); err != nil { // server_hostpools.go
		return nil, err
	}
	s.dash = newDashboardMetrics()
	bal, err := lb.New(lb.Config{
		Listeners: s.balancerListeners(),
		// A stop (and a handoff's) drains for as long as a removed
		// instance would.
		Limits:   lb.Limits{ShutdownTimeout: s.cfg.Balancer.DrainTimeout.D()},
		Logger:   s.log.With("part", "lb"),
		Observer: s.dash.observer(),
	})
	if err != nil {
		return nil, &ConfigError{Err: fmt.Errorf("balancer: %w", err)}
	}
	s.bal = bal
	s.lbs = newLBStream(bal, (&lbChecks{s: s}).check, s.log.With("part", "lbstream"))
	if s.cl != nil {
		s.lbs.gate = s.cl.gate
	}
	if err := s.openACME(); err != nil { // server_acme.go
		return nil, err
	}
	if err := s.openUI(); err != nil { // server_ui.go
		return nil, err
	}
	if err := s.openAdmin(); err != nil {
		return nil, err
	}
	if s.cl == nil { // a cluster's leader opens them (server_cluster.go)
		if err := s.openStoredApps(); err != nil { // apps.go
			return nil, err
		}
	}
	if err := s.writeAdminURL(); err != nil {
		return nil, err
	}
	// Last: lb.Balancer releases bound sockets only by running (see
	// Close), so nothing may fail after this.
	// (ListenOn owns the sockets taken over from here on.)
	if err := s.bal.ListenOn(s.ho.socks); err != nil {
		return nil, fmt.Errorf("balancer (balancer.listen %s): %w", s.cfg.Balancer.Listen, err)
	}
	s.ho.inh.closeUnclaimed()
	return s, nil
}

// openState prepares the data directory and opens the durable parts: the
// store, the CA, the admin token and the artifact store.
func (s *Server) openState() error {
	data := s.cfg.DataDir
	if err := prepareDataDir(data, s.log); err != nil {
		return err
	}
	if err := s.openSockets(); err != nil { // server_handoff.go: before the store's lock
		return err
	}
	var err error
	if s.st, err = store.Open(filepath.Join(data, StoreFile), store.Options{Logger: s.log}); err != nil {
		return err
	}
	s.onRelease(func(context.Context) { s.st.Close() })
	s.w = s.st
	if s.ca, err = pki.LoadOrCreateCA(filepath.Join(data, "ca")); err != nil {
		return fmt.Errorf("fleet CA: %w", err)
	}
	if s.token, err = adminapi.LoadOrCreateToken(filepath.Join(data, adminapi.TokenFile)); err != nil {
		return err
	}
	if s.arts, err = release.Open(filepath.Join(data, "artifacts"), s.log); err != nil {
		return err
	}
	s.fleetEvents = controller.NewEventWriter(func(ev api.Event) error {
		_, err := s.w.AppendEvent(api.FleetEventsApp, ev)
		return err
	}, s.log.With("part", "fleet"))
	s.uploads = controller.NewUploads(s.arts, nil, func(ev api.Event) {
		s.log.Info("artifact", "reason", ev.Reason)
	})
	return nil
}

// openFleet binds the fleet listener and builds the join server, the
// fleet's registry and the handler agents reach: join and renew (pki),
// hello (fleet) and the artifacts, the last two for agents only.
func (s *Server) openFleet() error {
	nodes, err := newStoredNodes(s.st.Hosts(), s.st.Tokens())
	if err != nil {
		return err
	}
	var tokens pki.TokenStore = s.st.Tokens()
	if s.cl != nil {
		tokens = s.cl.w.Tokens()
	}
	s.nodes = nodes
	s.pki, err = pki.NewServer(pki.ServerConfig{CA: s.ca, Tokens: tokens,
		Nodes: nodes, Logger: s.log.With("part", "pki")})
	if err != nil {
		return err
	}
	if s.cl == nil {
		f, err := s.newFleet(nil)
		if err != nil {
			return err
		}
		s.fleetp.Store(f)
	}
	s.fleetLn = s.ho.fleetLn // bound or taken over by openSockets
	s.fleetURL = s.cfg.Fleet.URL
	if s.fleetURL == "" { // a loopback listener: its real address
		s.fleetURL = "https://" + s.fleetLn.Addr().String()
	}
	u, err := url.Parse(s.fleetURL)
	if err != nil {
		return &ConfigError{Err: fmt.Errorf("fleet.url %q: %w", s.fleetURL, err)}
	}
	// The URL's host, and the address listened on when it is one: a node
	// that joins by address checks it against the certificate's IP
	// addresses (pki.PinTransport).
	names := []string{u.Hostname()}
	if host, _, err := net.SplitHostPort(s.fleetLn.Addr().String()); err == nil && host != u.Hostname() && !net.ParseIP(host).IsUnspecified() {
		names = append(names, host)
	}
	tlsCfg, err := pki.ServerTLSConfig(s.ca, names)
	if err != nil {
		return fmt.Errorf("fleet listener certificate: %w", err)
	}
	agentOnly := s.pki.RequireNode(api.RoleAgent)
	mux := http.NewServeMux()
	mux.Handle("POST /v1/join", s.pki)
	mux.Handle("POST /v1/renew", s.pki)
	mux.Handle("POST /v1/hello", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := s.fleet(); f != nil {
			f.Handler().ServeHTTP(w, r)
			return
		}
		adminapi.WriteError(w, fmt.Errorf("%w: this server does not lead the cluster yet", adminapi.ErrUnavailable))
	}))
	// Balancer nodes follow the balancer's configuration (server_lbstream.go).
	mux.Handle("GET /v1/lb/config", s.pki.RequireNode(api.RoleLB)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.lbs.serveHTTP(w, r)
	})))
	mux.Handle("GET /v1/artifacts/{digest}", agentOnly(adminapi.Handle(func(w http.ResponseWriter, r *http.Request) error {
		return adminapi.ServeArtifact(w, r, s.uploads)
	})))
	s.fleetSrv = &http.Server{Handler: s.advertiseServers(s.fleetToLeader(mux)), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	return nil
}

// newFleet makes the fleet's registry from the stored hosts, its actions
// carrying term (nil: a server alone, term 1).
func (s *Server) newFleet(term func() uint64) (*fleet.Fleet, error) {
	clientTLS, err := pki.ServerClientTLSConfig(s.ca)
	if err != nil {
		return nil, fmt.Errorf("fleet client certificate: %w", err)
	}
	var hosts fleet.HostStore = s.st.Hosts()
	if s.cl != nil {
		hosts = s.cl.w.Hosts()
	}
	f, err := fleet.New(fleet.Options{
		Store: hosts, PKI: s.pki, TLS: clientTLS, Term: term,
		HeartbeatEvery: s.cfg.Fleet.Heartbeat.D(), LostAfter: s.cfg.Fleet.LostAfter.D(),
		StartGrace: s.cfg.Fleet.StartGrace.D(),
		Logger:     s.log.With("part", "fleet"), OnEvent: s.fleetEvent,
	})
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	return f, nil
}

// fleet is the fleet's registry; nil while a cluster's server follows.
func (s *Server) fleet() *fleet.Fleet { return s.fleetp.Load() }

// hostStatus is the fleet's hosts; none while a cluster's server follows.
func (s *Server) hostStatus() []api.HostStatus {
	if f := s.fleet(); f != nil {
		return f.Status()
	}
	return nil
}

// openAdmin binds the admin listener, over TLS with a certificate from
// the fleet CA unless it listens on loopback only.
func (s *Server) openAdmin() error {
	addr := s.cfg.Admin.Listen
	s.adminLn = s.ho.adminLn // bound or taken over by openSockets
	s.admin = &http.Server{Handler: s.adminToLeader(s.adminHandler()), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	// Shutdown does not end the dashboard's live streams: Close does.
	s.admin.RegisterOnShutdown(func() { s.ui.Close() })
	if _, loopback := config.LoopbackPort(addr); loopback {
		return nil
	}
	tlsCfg, err := pki.ServerTLSConfig(s.ca, s.adminNames())
	if err != nil {
		return fmt.Errorf("admin api certificate: %w", err)
	}
	s.adminTLS = true
	s.adminLn = tls.NewListener(s.adminLn, tlsCfg)
	return nil
}

// adminNames are the names the admin API's certificate holds: whatever a
// client may dial it by (the listen address, the fleet URL's host, this
// machine's name and addresses, localhost).
func (s *Server) adminNames() []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if host, _, err := net.SplitHostPort(s.cfg.Admin.Listen); err == nil && host != "" {
		names = append(names, host)
	}
	if u, err := url.Parse(s.fleetURL); err == nil && u.Hostname() != "" {
		names = append(names, u.Hostname())
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				names = append(names, ipn.IP.String())
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// AdminURL is the admin API's URL: http on loopback, else https, with the
// fleet URL's host when the listener takes every address.
func (s *Server) AdminURL() string {
	addr := s.adminLn.Addr().(*net.TCPAddr)
	if !s.adminTLS {
		return "http://" + addr.String()
	}
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		if u, err := url.Parse(s.fleetURL); err == nil {
			host = u.Hostname()
		}
	}
	return "https://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// FleetURL is the URL agents reach the fleet listener at.
func (s *Server) FleetURL() string { return s.fleetURL }

// Addr returns the address the balancer listens on.
func (s *Server) Addr() net.Addr { return s.bal.Addr(ServerListener) }

// AdminAddr returns the address the admin API listens on.
func (s *Server) AdminAddr() net.Addr { return s.adminLn.Addr() }

// FleetAddr returns the address the fleet listener listens on.
func (s *Server) FleetAddr() net.Addr { return s.fleetLn.Addr() }

// CAPin is the fleet CA's pin.
func (s *Server) CAPin() string { return s.ca.Pin() }

// writeAdminURL writes AdminURLFile, removed again when the Server is
// released.
func (s *Server) writeAdminURL() error {
	urlFile := filepath.Join(s.cfg.DataDir, AdminURLFile)
	if err := atomicfile.Write(urlFile, []byte(s.AdminURL()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin url: %w", err)
	}
	s.onRelease(func(context.Context) {
		if !s.ho.releasing.Load() { // else the new process's
			os.Remove(urlFile)
		}
	})
	return nil
}

// Run serves until ctx ends or a listener fails, then stops in order: the
// apps' controllers first (while the fleet still delivers their
// instances' exits and the balancer still serves), then the fleet, the
// admin API and the fleet listener, then the balancer, which drains for
// balancer.drain_timeout. A new process's takeover (server_handoff.go)
// stops the same parts and closes the store while the balancer serves
// on, until the new process serves. It returns after every goroutine has
// ended and every part OpenServer acquired is released; nil after a stop
// through ctx or a handoff.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("shoal server already ran or was closed")
	}
	defer s.release(ctx)
	appsCtx, stopApps := context.WithCancel(ctx)
	defer stopApps()
	// The parts the controllers stop through outlive them, and the
	// balancer outlives the parts.
	partsCtx, stopParts := context.WithCancel(context.WithoutCancel(ctx))
	defer stopParts()
	balCtx, stopBal := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBal()
	s.ho.stopApps, s.ho.stopBal = stopApps, stopBal

	var parts errgroup.Group
	parts.Go(func() error {
		s.fleetEvents.Run()
		return nil
	})
	if s.cl == nil {
		parts.Go(func() error {
			defer s.fleetEvents.Close() // after the fleet's last event
			return s.fleet().Run(partsCtx)
		})
	} else {
		parts.Go(func() error {
			<-partsCtx.Done() // after the last leadership's fleet ended
			s.fleetEvents.Close()
			return nil
		})
	}
	parts.Go(func() error { return s.lbs.run(partsCtx) })
	if s.acme != nil && s.cl == nil { // a cluster's leader runs it (server_cluster.go)
		parts.Go(func() error { return s.acme.Run(partsCtx) })
		if s.cfg.Balancer.ACME.FromRoutes() {
			parts.Go(func() error {
				s.followRouteHosts(partsCtx) // server_acme.go
				return nil
			})
		}
	}
	serveUntilDone(partsCtx, &parts, s.admin, s.adminLn, "admin api", 2*time.Second)
	serveUntilDone(partsCtx, &parts, s.fleetSrv, tls.NewListener(s.fleetLn, s.fleetSrv.TLSConfig), "fleet listener", 2*time.Second)
	n := 0
	if s.cl == nil {
		for _, p := range s.pools {
			parts.Go(func() error { return p.Run(appsCtx) })
		}
		n = s.startApps(appsCtx) // apps.go
	} else {
		parts.Go(func() error {
			// The apps run while this server leads; an error of the
			// node stops the server.
			err := s.cl.run(appsCtx, s.lead) // server_cluster.go
			stopApps()
			return err
		})
		parts.Go(func() error {
			s.register(appsCtx) // server_cluster_admin.go
			return nil
		})
		parts.Go(func() error {
			s.keepAddress(appsCtx) // server_cluster_join.go
			return nil
		})
		parts.Go(func() error {
			s.syncArtifacts(appsCtx) // server_cluster_artifacts.go
			return nil
		})
	}

	var g errgroup.Group
	g.Go(func() error {
		<-appsCtx.Done()
		if s.cl == nil {
			s.stopApps() // apps.go: waits for every controller
		}
		stopParts()
		err := parts.Wait()
		s.afterParts(ctx, balCtx) // server_handoff.go
		stopBal()
		return err
	})
	appsReady := make(chan struct{})
	g.Go(func() error {
		// After a takeover the old process serves until the apps here
		// serve: this balancer accepts from then on.
		if s.ho.inh != nil {
			select {
			case <-appsReady:
			case <-appsCtx.Done():
			}
		}
		err := s.bal.Run(balCtx)
		if err != nil {
			stopApps()
		}
		return err
	})
	stopHandoff := s.runHandoff(balCtx, appsCtx, &g, appsReady, func() {
		if s.opts.OnReady == nil {
			return
		}
		r := ServerReady{AdminURL: s.AdminURL(), FleetURL: s.fleetURL,
			BalancerURL: "http://" + s.Addr().String(), CAPin: s.ca.Pin(), Apps: n}
		if a := s.bal.Addr(ServerTLSListener); a != nil {
			r.BalancerTLSURL = "https://" + a.String()
		}
		s.opts.OnReady(r)
	})
	defer stopHandoff()
	err := g.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close releases a Server that was opened and is not run: its sockets, the
// admin URL file and the store. Run releases them itself; Close after Run
// does nothing.
func (s *Server) Close() {
	if s.started.CompareAndSwap(false, true) {
		// lb.Balancer has no Close: a Run with an ended context starts
		// and at once stops it, closing its sockets.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.bal.Run(ctx)
	}
	s.release(context.Background())
}

func (s *Server) onRelease(f func(ctx context.Context)) { s.undo = append(s.undo, f) }

func (s *Server) release(ctx context.Context) {
	s.done.Do(func() {
		for i := len(s.undo) - 1; i >= 0; i-- {
			s.undo[i](ctx)
		}
	})
}

// fleetEvent queues an event of the fleet for the event log, under
// api.FleetEventsApp (GET /v1/hosts/events). It never blocks: the writer
// stores it from Run's goroutine, keeps and retries what the store
// refuses, and counts what it must drop (/metrics, app="@fleet").
func (s *Server) fleetEvent(ev api.Event) { s.fleetEvents.Add(ev) }

// storedNodes is the join server's allow-list (pki.Nodes) over the
// fleet's stored hosts and join tokens: a name is taken once a node joined
// with it in this run, a host of that name said hello (and was stored), or
// a token stored at the server's start was used by a join of that name (a
// balancer node says no hello), so the nodes of a restarted server are let
// in again. The tokens are read once, at open: State runs inside the
// token store's write transaction (pki.TokenStore.Take's check), where it
// must not read them.
type storedNodes struct {
	hosts fleet.HostStore
	// joined holds the names of the joins of the tokens stored at open,
	// or at the start of this server's term as a cluster's leader
	// (reload).
	joined atomic.Pointer[map[string]bool]
	mem    pki.MemNodes
}

// newStoredNodes reads the used tokens of tokens.
func newStoredNodes(hosts fleet.HostStore, tokens *store.Tokens) (*storedNodes, error) {
	toks, err := tokens.List()
	if err != nil {
		return nil, err
	}
	n := &storedNodes{hosts: hosts}
	n.setJoined(toks)
	return n, nil
}

// reload reads the used tokens again (a cluster's replica when this
// server starts leading).
func (n *storedNodes) reload(tokens *store.Tokens) error {
	toks, err := tokens.List()
	if err != nil {
		return err
	}
	n.setJoined(toks)
	return nil
}

func (n *storedNodes) setJoined(toks []api.JoinToken) {
	joined := map[string]bool{}
	for _, t := range toks {
		if t.Used && t.UsedBy != "" {
			joined[t.UsedBy] = true
		}
	}
	n.joined.Store(&joined)
}

// State implements pki.Nodes.
func (n *storedNodes) State(name string) pki.NodeState {
	if st := n.mem.State(name); st != pki.NodeUnknown {
		return st
	}
	if (*n.joined.Load())[name] {
		return pki.NodeActive
	}
	hosts, err := n.hosts.List()
	if err != nil {
		return pki.NodeUnknown
	}
	for _, h := range hosts {
		if h.Name == name {
			return pki.NodeActive
		}
	}
	return pki.NodeUnknown
}

// names returns every name the allow-list holds: admitted or removed in
// this run, joined with a stored token, or of a stored host.
func (n *storedNodes) names() []string {
	out := n.mem.Names()
	for name := range *n.joined.Load() {
		out = append(out, name)
	}
	if hosts, err := n.hosts.List(); err == nil {
		for _, h := range hosts {
			out = append(out, h.Name)
		}
	}
	return out
}

// Admit implements pki.Nodes.
func (n *storedNodes) Admit(id pki.Identity) error {
	if st := n.State(id.Name); st != pki.NodeUnknown {
		return fmt.Errorf("%w: %s is %s", pki.ErrNameTaken, id.Name, st)
	}
	return n.mem.Admit(id)
}
