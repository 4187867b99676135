package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-dev/shoal/internal/lb"
)

// The `shoal server` side of the listener handoff (handoff.go). A second
// `shoal server -c server.yaml` with the same data_dir (or SIGUSR2 to the
// running one) takes over every listening socket: the balancer's (listen
// and tls_listen), the admin API's and the fleet port's, through
// <data_dir>/handoff.sock. The order keeps the balancer accepting while
// the store changes hands:
//
//	new: load server.yaml --> dial handoff.sock --> claim sockets (bind the new ones)
//	     --> release -----------------------------> old: controllers stop (instances run on),
//	                                                     fleet, admin and fleet servers stop,
//	                                                     store closed; balancer serves on
//	     <-- released ------------------------------
//	     open store, CA, apps; serve admin and fleet (queued connections answered)
//	     controllers adopt the instances --> every app ready (or serverAppsWait)
//	     --> balancer accepts --> stop -------------> old: balancer stops accepting, drains
//	                                                     (balancer.drain_timeout), exits 0
//	     <-- done; ready line, READY=1 / MAINPID
//
// The balancer nodes see a new epoch and get a snapshot once the apps are
// ready (lbStream.open), never the empty pools of a server that has not
// adopted its instances yet.

// serverHandoffSocket is the server's handoff socket in its data_dir.
const serverHandoffSocket = "handoff.sock"

// serverAppsWait bounds how long a starting server waits for the apps it
// opened to serve their desired count before its balancer takes over and
// the balancer nodes get its configuration: below handoffWait, after which
// the old process would give up waiting for the stop.
const serverAppsWait = 90 * time.Second

// serverHandoff is the Server's handoff state.
type serverHandoff struct {
	inh *inherited // what was taken over from an old process; nil if none
	srv handoffServer
	// The sockets taken over or bound before the store opened.
	adminLn, fleetLn net.Listener
	socks            map[string]*net.TCPListener // balancer listeners taken over, by name
	usr2             chan os.Signal

	// releasing is set when a new process asked for the release: the
	// store is then closed after the parts stop, and the admin URL file
	// is the new process's.
	releasing atomic.Bool
	released  chan struct{} // closed once the store is closed for the new process
	stopApps  context.CancelFunc
	stopBal   context.CancelFunc
}

// balancerListeners are the listeners of the server's balancer.
func (s *Server) balancerListeners() []lb.Listener {
	listeners := []lb.Listener{{Name: ServerListener, Addr: s.cfg.Balancer.Listen}}
	if s.cfg.Balancer.TLSListen != "" {
		listeners = append(listeners, lb.Listener{Name: ServerTLSListener, Addr: s.cfg.Balancer.TLSListen, Managed: true})
	}
	return listeners
}

// openSockets takes over the sockets of a server running from the same
// data_dir, or binds them: the admin and fleet listeners and the handoff
// socket (the balancer's own listeners not taken over are bound by
// lb.Balancer.ListenOn). With an old process it then asks it to release
// its store and waits for that, so that store.Open finds the file's lock
// free. On error the old process serves on.
func (s *Server) openSockets() (err error) {
	s.ho.released = make(chan struct{})
	path := filepath.Join(s.cfg.DataDir, serverHandoffSocket)
	if s.ho.inh, err = takeover(path); err != nil {
		return fmt.Errorf("take over from the running server: %w", err)
	}
	s.onRelease(func(context.Context) { s.ho.inh.close() })
	if s.ho.adminLn, err = s.claimOrListen(handoffAdmin, s.cfg.Admin.Listen); err != nil {
		return fmt.Errorf("admin api (admin.listen %s): %w", s.cfg.Admin.Listen, err)
	}
	s.onRelease(func(context.Context) { s.ho.adminLn.Close() })
	if s.ho.fleetLn, err = s.claimOrListen(handoffFleet, s.cfg.Fleet.Listen); err != nil {
		return fmt.Errorf("fleet listener (fleet.listen %s): %w", s.cfg.Fleet.Listen, err)
	}
	s.onRelease(func(context.Context) { s.ho.fleetLn.Close() })
	s.ho.socks = map[string]*net.TCPListener{}
	// Closed here only when OpenServer fails before ListenOn owns them.
	s.onRelease(func(context.Context) {
		if !s.started.Load() {
			for _, l := range s.ho.socks {
				l.Close()
			}
		}
	})
	for _, l := range s.balancerListeners() {
		tl, err := s.ho.inh.claimTCP(handoffListener, l.Name, l.Addr)
		if err != nil {
			return fmt.Errorf("balancer listener %s: %w", l.Name, err)
		}
		if tl != nil {
			s.ho.socks[l.Name] = tl
		}
	}
	ln, err := s.ho.inh.listenSelf(path)
	if err != nil {
		return err
	}
	s.ho.srv = handoffServer{ln: ln, path: path, log: s.log, owner: s}
	s.onRelease(func(context.Context) { ln.Close() })
	if s.ho.inh != nil {
		s.log.Info("taking over from the running server", "old_pid", s.ho.inh.offer.PID)
		if err := s.ho.inh.release(); err != nil {
			return fmt.Errorf("take over from the running server: %w", err)
		}
	}
	return nil
}

// claimOrListen returns the socket of kind at addr that the old process
// handed over, or binds addr.
func (s *Server) claimOrListen(kind, addr string) (net.Listener, error) {
	tl, err := s.ho.inh.claimTCP(kind, "", addr)
	if err != nil || tl != nil {
		return tl, err
	}
	return net.Listen("tcp", addr)
}

// runHandoff starts, in g, what the handoff needs while Run runs: the
// handoff socket, SIGUSR2 (start this binary again, which takes over),
// and the readiness: once every app opened at the start serves (or
// serverAppsWait passed) the balancer nodes get the configuration and,
// after a takeover, the balancer starts accepting (appsReady closes), the
// old process stops, and OnReady is called. It returns stop, which Run
// calls at its end.
func (s *Server) runHandoff(ctx, appsCtx context.Context, g *errgroup.Group, appsReady chan<- struct{}, onReady func()) (stop func()) {
	s.ho.usr2 = make(chan os.Signal, 1)
	signal.Notify(s.ho.usr2, syscall.SIGUSR2)
	g.Go(func() error {
		s.ho.srv.serve(ctx)
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		s.ho.srv.ln.Close()
		return nil
	})
	g.Go(func() error {
		watchUpgrade(ctx, s.ho.usr2, s.log)
		return nil
	})
	g.Go(func() error {
		if s.ho.inh == nil {
			onReady()
		}
		s.awaitApps(appsCtx)
		close(appsReady)
		s.lbs.open()
		select {
		case <-s.bal.Serving():
		case <-ctx.Done():
		}
		if appsCtx.Err() != nil {
			// Stopping before the takeover ended: the old process
			// serves on (with its balancer only, once it released).
			s.ho.inh.close()
			return nil
		}
		notifyServing(s.ho.inh, s.log)
		if s.ho.inh != nil {
			onReady()
		}
		return nil
	})
	return func() { signal.Stop(s.ho.usr2) }
}

// awaitApps waits until every app opened at the start serves its desired
// count (controller.Ready) or its controller ended, for serverAppsWait at
// most or until ctx ends; the apps not ready then are logged.
func (s *Server) awaitApps(ctx context.Context) {
	s.appsMu.Lock()
	apps := s.sortedAppsLocked()
	s.appsMu.Unlock()
	t := time.NewTimer(serverAppsWait)
	defer t.Stop()
	for i, a := range apps {
		select {
		case <-a.ctl.Ready():
		case <-a.done:
		case <-ctx.Done():
			return
		case <-t.C:
			var names []string
			for _, b := range apps[i:] {
				names = append(names, b.name)
			}
			s.log.Warn("apps not serving their desired count yet; the balancer serves what they have", "apps", strings.Join(names, ","), "waited", serverAppsWait.String())
			return
		}
	}
}

// afterParts runs in Run once the controllers and the other parts have
// stopped: for a new process that asked for the release, the store closes
// (released), and the balancer serves on until the stop (balCtx) or ctx.
func (s *Server) afterParts(ctx, balCtx context.Context) {
	if !s.ho.releasing.Load() {
		return
	}
	s.st.Close()
	s.log.Info("store released for the new process", "file", s.st.Path())
	close(s.ho.released)
	select {
	case <-ctx.Done():
	case <-balCtx.Done():
	}
}

// handoffSockets implements handoffOwner: the balancer's listeners, and
// until a release the admin and fleet sockets (closed by the release's
// stop of their servers).
func (s *Server) handoffSockets() ([]handoffSocket, []*os.File, error) {
	out, files, err := balancerSockets(s.bal)
	if err != nil {
		return nil, nil, err
	}
	if s.ho.releasing.Load() {
		return out, files, nil
	}
	more := []handoffSocket{{Kind: handoffAdmin, Addr: s.cfg.Admin.Listen}, {Kind: handoffFleet, Addr: s.cfg.Fleet.Listen}}
	mf, err := socketFiles(more, []net.Listener{s.ho.adminLn, s.ho.fleetLn})
	if err != nil {
		closeFiles(files)
		return nil, nil, err
	}
	return append(out, more...), append(files, mf...), nil
}

// releaseForHandoff implements handoffOwner: the controllers stop
// (leaving every instance running), then the fleet, the admin and fleet
// servers and the store; the balancer serves on.
//
// A server of a Raft cluster refuses: its raft log, its raft listener and
// its replica would have to change hands too (not built); it is restarted
// instead, while the other servers lead.
func (s *Server) releaseForHandoff(ctx context.Context) error {
	if s.cl != nil {
		return errors.New("a server of a cluster does not hand over its sockets (not built): stop it and start the new one; the other servers lead meanwhile")
	}
	if !s.ho.releasing.Swap(true) {
		s.log.Info("handoff: stopping the controllers and releasing the store; the balancer serves on")
		s.ho.stopApps()
	}
	select {
	case <-s.ho.released:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// handedOver implements handoffOwner: the balancer stops accepting and
// drains; Run then returns.
func (s *Server) handedOver(int, []handoffSocket) { s.ho.stopBal() }
