// Package fleet is the server's registry of the fleet's hosts and the
// scheduler behind controller.Host (issue 12). Agents announce themselves
// with POST /v1/hello (Handler); the registry keeps each host's record
// (api.Host, through a HostStore), checks it with a heartbeat (GET /v1/host
// every Options.HeartbeatEvery), follows its instances' exits, and gives
// each app's controller a controller.Host (Fleet.Host) that places new
// instances with package placement and drives the chosen agent through
// package agentclient.
//
// A host, as placement sees it (api.HostState):
//
//	hello --> joining --listed--> ready <--Drain/Undrain--> draining
//	             |                  |                          |
//	             +---- no heartbeat for LostAfter -------------+--> unreachable
//	                                                                 |
//	  ready (or draining) <--its stale instances stopped-- answers again
//
// Lost hosts and the generation fence. A host whose heartbeats fail for
// Options.LostAfter (two in a row at least; time the fleet's own
// goroutines were paused does not count, pause.go) is declared lost: its generation is bumped (and
// stored), and every instance placed on it is reported ended to its app,
// once, with a controller.Exit whose Reason says so, so that the app's
// controller launches replacements on other hosts. Each instance carries
// the generation it was started under (the launch's "generation" label,
// which the agent reports back in its list); when the host answers again,
// the registry lists it and stops every instance of an older generation
// before it takes the host back, so a host that comes back never adds
// serving instances beyond desired + surge. The generation survives a
// restart of the server (HostStore), and so does the fence.
//
// Concurrency. A Fleet is safe for concurrent use. One lock guards the
// registry; no I/O runs under it. Run owns every goroutine: two per host
// (heartbeat; list, sweep and exits follower) and two per app view
// (delivery of its exits and of its evacuations), and returns after they
// end.
//
// Draining. A draining host takes no new instance, and each app's
// controller is told which of its instances run there
// (controller.Evacuation, drain.go) and moves them, launch first.
package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
)

// Defaults of Options.
const (
	DefaultHeartbeatEvery = time.Second
	DefaultLostAfter      = 5 * time.Second
)

// Labels the fleet sets on every launch (api.LaunchSpec.Labels), which the
// agent reports back in its list, so that a restarted server knows what it
// started: the host's generation at the start, and the declared resources.
const (
	LabelGeneration = "shoal.generation"
	LabelCPU        = "shoal.cpu"
	LabelMemory     = "shoal.memory"
)

// HostStore keeps the registry's host records (store.Hosts in bbolt, or
// MemHosts). Implementations are safe for concurrent use.
type HostStore interface {
	// Put stores h under h.Name, replacing the record of that name.
	Put(h api.Host) error
	// List returns every record.
	List() ([]api.Host, error)
	// Delete removes the record name; removing none is not an error.
	Delete(name string) error
}

// MemHosts is a HostStore in memory, for tests and for a server without a
// store. The zero value is ready to use.
type MemHosts struct {
	mu    sync.Mutex
	hosts map[string]api.Host
}

// Put implements HostStore.
func (m *MemHosts) Put(h api.Host) error {
	if h.Name == "" {
		return errors.New("put host: empty name")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hosts == nil {
		m.hosts = make(map[string]api.Host)
	}
	m.hosts[h.Name] = h
	return nil
}

// List implements HostStore; the records are sorted by name.
func (m *MemHosts) List() ([]api.Host, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]api.Host, 0, len(m.hosts))
	for _, h := range m.hosts {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b api.Host) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete implements HostStore.
func (m *MemHosts) Delete(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.hosts, name)
	return nil
}

// Options configures a Fleet.
type Options struct {
	// Store keeps the host records. Required.
	Store HostStore
	// PKI guards POST /v1/hello (RequireNode for agents). Required.
	PKI *pki.Server
	// TLS is the server's configuration toward agents: its client
	// certificate and the fleet CA as RootCAs. Required. The fleet uses a
	// clone per host with ServerName set to the host's name, and refuses
	// an agent whose certificate does not name that host as an agent.
	TLS *tls.Config
	// Term returns the leader's term sent with every mutating call to an
	// agent; nil means a constant 1 (one server, no election yet). It is
	// called with the registry locked: it must not call the Fleet.
	Term func() uint64
	// HeartbeatEvery is the period of GET /v1/host; zero means
	// DefaultHeartbeatEvery.
	HeartbeatEvery time.Duration
	// LostAfter is how long a host's heartbeats may fail before it is
	// declared unreachable (and two in a row must have: see heartbeat),
	// not counting the time the fleet's own goroutines were paused (a
	// starved server: pause.go); zero means DefaultLostAfter. It must be
	// more than HeartbeatEvery.
	LostAfter time.Duration
	// StartGrace is how much longer than LostAfter a host that has not
	// answered since this Fleet began heartbeating it may go before it is
	// lost (zero: none). A Fleet that starts (a server's start, a new
	// leader's term) has no record of when each host last answered, and
	// at a large fleet's failover its first heartbeats (a new mutual-TLS
	// connection to every host at once) may take longer than LostAfter:
	// Nomad's failover_heartbeat_ttl answers the same problem. A host that
	// has answered once in this run is held to LostAfter alone.
	StartGrace time.Duration
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
	// OnEvent, when set, receives every event of the fleet (Type "host":
	// joined, ready, unreachable, back, stale instances stopped, draining),
	// in order. It is called without the registry's lock and must return
	// quickly.
	OnEvent func(api.Event)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Fleet is the registry of hosts and the scheduler of their instances.
// Create it with New; serve Handler on the fleet port; run Run.
type Fleet struct {
	o    Options
	log  *slog.Logger
	term func() uint64

	evMu    sync.Mutex // orders OnEvent calls
	storeMu sync.Mutex // orders writes of host records (persist)

	mu    sync.Mutex
	hosts map[string]*host
	// where indexes the instances placed on the hosts by id (see
	// placeLocked), so that Stop, Logs and Stats find one without
	// looking at every host.
	where map[string]*host
	views map[string]*view
	ended endedRing
	// unplaced are the starts refused for lack of capacity (unplaced.go).
	unplaced map[string]Unplaced
	// readyAt is when a host last became ready (synced).
	readyAt time.Time
	// changed is closed and replaced at every change of a host's state
	// (Settle waits on it).
	changed chan struct{}
	// paused is how long the fleet's goroutines were paused while Run
	// ran, as of watchedAt (pause.go); zero watchedAt: not measured yet
	// in this run.
	paused    time.Duration
	watchedAt time.Time
	runCtx    context.Context // nil unless Run runs
	wg        sync.WaitGroup
}

// New checks opts and loads the stored hosts, which start as joining. It
// starts no goroutine.
func New(opts Options) (*Fleet, error) {
	switch {
	case opts.Store == nil:
		return nil, errors.New("fleet: Store is required")
	case opts.PKI == nil:
		return nil, errors.New("fleet: PKI is required")
	case opts.TLS == nil:
		return nil, errors.New("fleet: TLS is required")
	}
	if opts.HeartbeatEvery <= 0 {
		opts.HeartbeatEvery = DefaultHeartbeatEvery
	}
	if opts.LostAfter <= 0 {
		opts.LostAfter = DefaultLostAfter
	}
	if opts.LostAfter <= opts.HeartbeatEvery {
		return nil, fmt.Errorf("fleet: LostAfter %s must be more than HeartbeatEvery %s", opts.LostAfter, opts.HeartbeatEvery)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &Fleet{o: opts, log: opts.Logger, term: opts.Term, hosts: map[string]*host{}, where: map[string]*host{}, views: map[string]*view{}, unplaced: map[string]Unplaced{},
		changed: make(chan struct{})}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.term == nil {
		f.term = func() uint64 { return 1 }
	}
	recs, err := opts.Store.List()
	if err != nil {
		return nil, fmt.Errorf("fleet: load hosts: %w", err)
	}
	for _, rec := range recs {
		f.hosts[rec.Name] = f.newHost(rec)
	}
	return f, nil
}

// clientFor returns a client of the agent of rec, whose certificate must
// name rec.Name with the agent role.
func (f *Fleet) clientFor(rec api.Host) *agentclient.Client {
	cfg := f.o.TLS.Clone()
	cfg.ServerName = rec.Name
	name := rec.Name
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("agent %s sent no certificate", name)
		}
		id, err := pki.IdentityOf(cs.PeerCertificates[0])
		if err != nil || id.Name != name || id.Role != api.RoleAgent {
			return fmt.Errorf("the certificate at %s is not agent %s's", rec.URL, name)
		}
		return nil
	}
	c := agentclient.New(rec.URL, cfg)
	return c
}

// Run checks the hosts and follows their exits until ctx ends, then
// returns nil once every goroutine it started has ended (and the idle
// connections to the agents are closed). Exits are delivered to the apps'
// Hosts only while it runs: end the controllers first. Hosts that join
// while it runs are followed too. It may run again after it returned.
func (f *Fleet) Run(ctx context.Context) error {
	f.mu.Lock()
	if f.runCtx != nil {
		f.mu.Unlock()
		return errors.New("fleet: Run is running already")
	}
	f.runCtx = ctx
	f.watchedAt = time.Time{}
	f.pausedLocked()
	f.goLocked(f.watchPauses) // pause.go
	for _, h := range f.hosts {
		f.startHostLocked(h)
	}
	for _, v := range f.views {
		f.goLocked(v.forward)
	}
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	f.runCtx = nil
	f.mu.Unlock()
	f.wg.Wait()
	f.mu.Lock()
	for _, h := range f.hosts {
		h.client.HTTP.CloseIdleConnections()
	}
	f.mu.Unlock()
	return nil
}

// goLocked runs fn in a goroutine owned by Run, if Run runs.
func (f *Fleet) goLocked(fn func(ctx context.Context)) {
	if f.runCtx == nil {
		return
	}
	f.goCtxLocked(f.runCtx, fn)
}

// goCtxLocked runs fn(ctx) in a goroutine owned by Run; ctx must end when
// Run's does.
func (f *Fleet) goCtxLocked(ctx context.Context, fn func(ctx context.Context)) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn(ctx)
	}()
}

// event logs ev and hands it to OnEvent.
func (f *Fleet) event(ev api.Event, level slog.Level) {
	ev.Type = "host"
	if ev.Time.IsZero() {
		ev.Time = f.o.Now()
	}
	f.log.Log(context.Background(), level, "host event", "reason", ev.Reason)
	if f.o.OnEvent == nil {
		return
	}
	f.evMu.Lock()
	defer f.evMu.Unlock()
	f.o.OnEvent(ev)
}

// persist stores h's record as it is in memory now. Writes are serialised
// and each writes the latest record, so the store never keeps an older
// generation or drain than the registry had when the last write began.
func (f *Fleet) persist(h *host) error {
	f.storeMu.Lock()
	defer f.storeMu.Unlock()
	f.mu.Lock()
	rec, removed := h.rec, h.removed
	f.mu.Unlock()
	if removed {
		return nil
	}
	if err := f.o.Store.Put(rec); err != nil {
		return fmt.Errorf("store host %s: %w", rec.Name, err)
	}
	return nil
}
