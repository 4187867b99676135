package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// Balancer is a running load balancer: listeners, routes and pools. Build
// one with New, bind with Listen, serve with Run; Reload, AddPool,
// RemovePool and SetMaintenance change it while it serves. All methods
// are safe for concurrent use.
type Balancer struct {
	log     *slog.Logger
	ids     *idGen
	metrics *metrics
	tunnels *tunnelSet
	maint   atomic.Pointer[Maintenance]
	// managed and challenges are set by an ACME client (acme.go).
	managed    atomic.Pointer[managedSet]
	challenges atomic.Pointer[map[string]string]
	tbl        atomic.Pointer[table]
	alog       atomic.Pointer[accessLog]
	obs        atomic.Pointer[observerBox]
	changes    changes
	// tickets seals the session tickets of every TLS listener, across
	// reloads: a client resumes on any listener and event loop.
	tickets *ticketKeys

	// handlers counts proxy handlers running, for Run's final wait.
	handlers sync.WaitGroup

	mu        sync.Mutex // guards the fields below; held during changes
	cfg       Config     // current, defaulted
	pools     map[string]*poolEntry
	listeners map[string]*listener
	listening bool
	running   bool
	stopping  bool
	bg        sync.WaitGroup // serve loops, health checkers, drains
	bgCtx     context.Context
	bgCancel  context.CancelFunc
	serveErr  chan error
	serving   chan struct{} // closed once Run serves every listener
}

// table is the immutable snapshot the proxy reads per request.
type table struct {
	routers map[string]*router // by listener name
	limits  Limits
	trusted []netip.Prefix
	budget  *retryBudget
}

// listener is one bound listener and its server.
type listener struct {
	cfg    Listener
	tlsCfg *tls.Config // nil for plain HTTP
	// certs serves tlsCfg's certificates and picks up files replaced on
	// disk; a reload replaces its pairs. nil for plain HTTP.
	certs  *certWatcher
	raw    net.Listener
	ln     net.Listener // what the server accepts from
	tlsL   *tlsListener
	srv    *http.Server
	fast   *fastServer   // the fast path (plain listeners, and TLS ones' HTTP/1.1); nil when off
	served chan struct{} // closed when Serve returned; nil before serving
	// fresh holds srv's connections with no request read yet, which
	// shutdown lets send it (see freshConns).
	fresh *freshConns
}

// New validates cfg (returning every problem at once), and builds the
// pools, their health checkers and the routing table. It binds nothing and
// starts nothing: call Listen, then Run.
func New(cfg Config) (*Balancer, error) {
	cfg = withDefaults(cfg)
	if err := validate(cfg); err != nil {
		return nil, fmt.Errorf("invalid balancer config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Balancer{
		log:       log,
		ids:       newIDGen(),
		tunnels:   newTunnelSet(),
		tickets:   newTicketKeys(nil),
		pools:     map[string]*poolEntry{},
		listeners: map[string]*listener{},
		serveErr:  make(chan error, 1),
		serving:   make(chan struct{}),
	}
	b.bgCtx, b.bgCancel = context.WithCancel(context.Background())
	b.metrics = newMetrics(b)
	for _, l := range cfg.Listeners {
		tc, cw, err := b.listenerTLS(l)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		b.listeners[l.Name] = b.newListener(l, tc, cw, cfg.Limits)
	}
	for _, pc := range cfg.Pools {
		pe, err := b.newPoolEntry(pc, cfg.Limits)
		if err != nil {
			return nil, err
		}
		b.pools[pc.Name] = pe
	}
	b.cfg = cfg
	b.maint.Store(cfg.Maintenance)
	b.alog.Store(newAccessLog(cfg.AccessLog))
	b.setObserver(cfg.Observer)
	b.tbl.Store(b.buildTable(cfg, nil))
	return b, nil
}

// listenerTLS loads the certificates of a TLS listener and returns its
// TLS config, which serves them through the watcher; nils for plain HTTP.
func (b *Balancer) listenerTLS(l Listener) (*tls.Config, *certWatcher, error) {
	if len(l.TLS) == 0 && !l.Managed {
		return nil, nil, nil
	}
	var managed func(string) *tls.Certificate
	if l.Managed {
		managed = b.managedFor
	}
	w, err := newCertWatcher(l.Name, l.TLS, managed, b.log)
	if err != nil {
		return nil, nil, err
	}
	tc := w.tlsConfig()
	b.tickets.install(tc)
	return tc, w, nil
}

// newServer builds the http.Server of a listener; tc is kept only to
// mark the listener as TLS (the tlsListener terminates TLS).
// newListener builds the (unbound) listener of l and its http.Server.
func (b *Balancer) newListener(l Listener, tc *tls.Config, cw *certWatcher, lim Limits) *listener {
	fresh := newFreshConns()
	srv := &http.Server{
		Handler:           &frontHandler{b: b, name: l.Name, tls: tc != nil, lm: b.metrics.forListener(l.Name)},
		ReadHeaderTimeout: lim.HeaderTimeout,
		IdleTimeout:       lim.ClientIdle,
		MaxHeaderBytes:    serverMaxHeaderBytes(lim.MaxHeaderBytes),
		ConnContext:       withConn,
		ConnState:         fresh.track,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
	}
	if tc != nil {
		// srv has no TLSConfig of its own (the tlsListener terminates
		// TLS), the one thing ConfigureServer could refuse.
		if err := serveHTTP2(srv); err != nil {
			b.log.Error("http/2 server", "listener", l.Name, "error", err)
		}
	}
	return &listener{cfg: l, tlsCfg: tc, certs: cw, srv: srv, fresh: fresh}
}

// buildTable compiles the routing table for cfg over b.pools; budget is
// carried over from the previous table when non-nil.
func (b *Balancer) buildTable(cfg Config, budget *retryBudget) *table {
	if budget == nil {
		budget = newRetryBudget(cfg.RetryBudget, cfg.MinRetries)
	} else {
		budget.set(cfg.RetryBudget, cfg.MinRetries)
	}
	t := &table{routers: map[string]*router{}, limits: cfg.Limits, trusted: cfg.TrustedProxies, budget: budget}
	// Every table starts with empty asset caches: a new configuration
	// (a shoal lb node's, from its file or its server) invalidates them.
	caches := map[string]*assetCache{}
	for _, l := range cfg.Listeners {
		routes := cfg.Routes
		if len(l.Routes) > 0 {
			want := map[string]bool{}
			for _, n := range l.Routes {
				want[n] = true
			}
			routes = nil
			for _, r := range cfg.Routes {
				if want[r.Name] {
					routes = append(routes, r)
				}
			}
		}
		t.routers[l.Name] = newRouter(routes, b.pools, b.metrics, caches)
	}
	return t
}

// Listen binds every listener. Bind errors are returned at once, and the
// listeners bound so far are closed again. Calling it twice is an error.
func (b *Balancer) Listen() error { return b.ListenOn(nil) }

// ListenOn is Listen with listening sockets that are already open, such
// as those another process handed over (a listener upgrade): the listener
// named by a key of socks accepts on that socket instead of binding its
// address; every other listener binds as Listen does. The Balancer owns
// every socket of socks from the call on: on error they are all closed
// with the ones it bound itself.
func (b *Balancer) ListenOn(socks map[string]*net.TCPListener) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	closeAll := func() {
		for _, s := range socks {
			s.Close()
		}
	}
	if b.listening {
		closeAll()
		return errors.New("balancer already listening")
	}
	for name := range socks {
		if b.listeners[name] == nil {
			closeAll()
			return fmt.Errorf("listen: no listener %q for the socket handed over", name)
		}
	}
	var bound []*listener
	for _, l := range b.listeners {
		var sock net.Listener
		if s := socks[l.cfg.Name]; s != nil {
			sock = s
		}
		if err := b.bind(l, b.cfg.Limits, sock); err != nil {
			for _, o := range bound {
				o.ln.Close()
				o.raw.Close()
			}
			closeAll()
			return err
		}
		bound = append(bound, l)
	}
	b.listening = true
	return nil
}

// bind sets up the accept chain of l on sock, or on a new socket bound to
// l's address when sock is nil.
func (b *Balancer) bind(l *listener, lim Limits, sock net.Listener) error {
	raw := sock
	if raw == nil {
		// A TLS listener turns TCP keep-alive on only for the connections
		// net/http serves (tlsListener.handshake): on the loops, as on
		// their plain accepts (and nginx's and HAProxy's defaults), the
		// idle timeouts end dead clients, and a new connection is spared
		// four setsockopt calls.
		var lc net.ListenConfig
		if l.tlsCfg != nil {
			lc.KeepAlive = -1
		}
		var err error
		if raw, err = lc.Listen(context.Background(), "tcp", l.cfg.Addr); err != nil {
			return fmt.Errorf("listener %s: %w", l.cfg.Name, err)
		}
	}
	l.raw = raw
	if l.tlsCfg == nil && !lim.DisableFastPath {
		// The loops accept themselves and keep MaxConns on their own.
		l.fast = newFastServer(b, l.cfg.Name, lim, raw.(*net.TCPListener))
		l.ln = l.fast.handoff
		return nil
	}
	var ln net.Listener = raw
	if lim.MaxConns > 0 {
		ln = newLimitListener(ln, lim.MaxConns)
	}
	if l.tlsCfg != nil {
		if !lim.DisableTLSFastPath && !lim.DisableFastPath {
			l.fast = newTLSFastServer(b, l.cfg.Name, lim)
		}
		l.tlsL = newTLSListener(ln, l.tlsCfg, lim.HeaderTimeout, lim.MaxHeaderBytes, l.fresh, l.fast)
		if l.fast != nil {
			l.fast.giveTo = l.tlsL.give
		}
		l.ln = l.tlsL
	} else {
		l.ln = plainListener{Listener: ln, maxHead: lim.MaxHeaderBytes}
	}
	return nil
}

// Addr returns the bound address of the named listener, or nil when it is
// unknown or not bound.
func (b *Balancer) Addr(name string) net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.listeners[name]
	if l == nil || l.raw == nil {
		return nil
	}
	return l.raw.Addr()
}

// Pool returns the named pool, for the admin API and the controller to
// add, drain, remove and weigh targets.
func (b *Balancer) Pool(name string) (*pool.Pool, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pe := b.pools[name]
	if pe == nil {
		return nil, false
	}
	return pe.p, true
}

// SetMaintenance turns maintenance mode on (m non-nil: every proxied
// request is answered 503 with m.Page and Retry-After) or off (nil).
func (b *Balancer) SetMaintenance(m *Maintenance) {
	if m != nil {
		c := *m
		m = &c
	}
	b.maint.Store(m)
	b.mu.Lock()
	b.cfg.Maintenance = m
	b.mu.Unlock()
}

// Run serves every listener (binding first if Listen was not called) and
// runs the health checkers until ctx is done. Then it shuts down
// gracefully: listeners stop accepting, in-flight requests and WebSockets
// get up to Limits.ShutdownTimeout to finish, remaining WebSockets are
// closed with status 1001 and remaining requests are cut. It returns after
// every goroutine of the balancer ended: nil after a shutdown caused by
// ctx, or the error that stopped a listener. A Balancer runs once.
func (b *Balancer) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.running || b.stopping {
		b.mu.Unlock()
		return errors.New("balancer already ran")
	}
	if !b.listening {
		b.mu.Unlock()
		if err := b.Listen(); err != nil {
			return err
		}
		b.mu.Lock()
	}
	b.running = true
	var fast []*fastServer
	for _, l := range b.listeners {
		b.serveLocked(l)
		if l.fast != nil {
			fast = append(fast, l.fast)
		}
	}
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		for _, s := range fast {
			select {
			case <-s.ready:
			case <-s.stopped:
				return
			}
		}
		close(b.serving)
	}()
	for _, pe := range b.pools {
		b.startHealthLocked(pe)
	}
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		b.watchCerts(b.bgCtx)
	}()
	b.mu.Unlock()

	var err error
	select {
	case <-ctx.Done():
	case err = <-b.serveErr:
	}
	b.shutdown()
	return err
}

// Serving is closed once Run accepts on every listener it started with
// (the fast path's event loops included); never when one fails to start.
func (b *Balancer) Serving() <-chan struct{} { return b.serving }

// serveLocked starts the server of a bound listener.
func (b *Balancer) serveLocked(l *listener) {
	l.served = make(chan struct{})
	if l.fast != nil {
		b.bg.Add(1)
		go func() {
			defer b.bg.Done()
			if err := l.fast.serve(); err != nil {
				b.log.Error("listener stopped", "listener", l.cfg.Name, "error", err)
				select {
				case b.serveErr <- fmt.Errorf("listener %s: %w", l.cfg.Name, err):
				default:
				}
			}
		}()
	}
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		defer close(l.served)
		err := l.srv.Serve(l.ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("listener stopped", "listener", l.cfg.Name, "error", err)
			select {
			case b.serveErr <- fmt.Errorf("listener %s: %w", l.cfg.Name, err):
			default:
			}
		}
	}()
}

// shutdown runs Run's graceful stop.
func (b *Balancer) shutdown() {
	b.mu.Lock()
	b.stopping = true
	timeout := b.cfg.Limits.ShutdownTimeout
	hdrTimeout := b.cfg.Limits.HeaderTimeout
	var ls []*listener
	for _, l := range b.listeners {
		ls = append(ls, l)
	}
	var pes []*poolEntry
	for _, pe := range b.pools {
		pes = append(pes, pe)
	}
	b.mu.Unlock()
	b.bgCancel() // health checkers and reload drains stop

	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.shutdown(sctx, hdrTimeout)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.tunnels.wait(sctx)
	}()
	wg.Wait()
	// Past this point nothing is graceful any more.
	b.tunnels.goAwayAll()
	if sctx.Err() != nil {
		// End the requests still in flight: a drain with no time left
		// cancels every Target.Context, which the proxy watches.
		for _, pe := range pes {
			for _, t := range pe.p.Targets() {
				pe.p.Drain(t.Addr(), 0)
			}
		}
	}
	for _, l := range ls {
		l.close()
	}
	b.handlers.Wait()
	b.bg.Wait()
	for _, pe := range pes {
		pe.tr.CloseIdleConnections()
		pe.up.closeIdle(true)
	}
}

// shutdown stops l gracefully (both its fast path and its http.Server),
// closing what remains when ctx ends first.
func (l *listener) shutdown(ctx context.Context, headerTimeout time.Duration) {
	if l.tlsL != nil {
		// Stop accepting, finish the handshakes running, then let their
		// connections send a first request: net/http's Shutdown drops a
		// request it reads once it began (freshConns). The fast path
		// keeps the same rule itself (evLoop.stopping).
		l.tlsL.drain(ctx)
		l.fresh.wait(ctx, headerTimeout)
	}
	var wg sync.WaitGroup
	if l.fast != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.fast.shutdown(ctx)
		}()
	}
	if err := l.srv.Shutdown(ctx); err != nil {
		l.srv.Close()
	}
	wg.Wait()
}

// close closes l and every connection it serves.
func (l *listener) close() {
	if l.fast != nil {
		l.fast.close()
	}
	l.srv.Close()
	if l.tlsL != nil {
		l.tlsL.Close()
	}
}

// durationSeconds formats d as whole seconds, at least 1, for Retry-After.
func durationSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}
