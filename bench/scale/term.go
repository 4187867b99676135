package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/release"
)

// term is what the leading replica runs, as daemon.Server.lead composes
// it: the fleet's registry made from the replicated host records, its
// calls carrying raft's term (which the agents fence on), and, once the
// apps exist, one controller per app writing through the replica's
// writer. A term begun after a failover adopts what the agents run.
type term struct {
	r     *replica
	n     uint64
	ctx   context.Context
	fleet *fleet.Fleet
	log   *slog.Logger
	apps  []*appRun
	// began is when the term began; gens each host's generation then
	// (a host whose generation rose since was declared lost in this term).
	began time.Time
	gens  map[string]uint64
	// hostEvents are the fleet's events of this term (the first
	// maxHostEvents), for the report of the hosts it declared lost.
	evMu       sync.Mutex
	hostEvents []api.Event
}

// maxHostEvents bounds the fleet events a term keeps: a ready and a few
// more per host.
const maxHostEvents = 8192

// lead runs r's term n until ctx ends (leadership lost, or the bench
// ends), then stops its controllers (with a cluster they leave their
// instances running) and, after them, its fleet. It returns the
// controllers' errors.
func (s *serverSide) lead(ctx context.Context, r *replica, n uint64) error {
	var fence func() uint64 // a server alone: no term
	if r.node != nil {
		fence = func() uint64 { return n }
	}
	cliTLS, err := pki.ServerClientTLSConfig(s.ca)
	if err != nil {
		return fmt.Errorf("term %d of %s: %w", n, r.id, err)
	}
	t := &term{r: r, n: n, ctx: ctx, log: s.sc.Logger, began: time.Now(), gens: map[string]uint64{}}
	f, err := fleet.New(fleet.Options{Store: r.hosts, PKI: s.pki, TLS: cliTLS, Term: fence,
		HeartbeatEvery: s.sc.HeartbeatEvery, LostAfter: s.sc.LostAfter, StartGrace: s.sc.StartGrace, Logger: s.sc.Logger,
		OnEvent: t.hostEvent})
	if err != nil {
		return fmt.Errorf("term %d of %s: %w", n, r.id, err)
	}
	t.fleet = f
	for _, h := range f.Status() {
		t.gens[h.Name] = h.Generation
	}
	fleetCtx, stopFleet := context.WithCancel(context.WithoutCancel(ctx))
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- f.Run(fleetCtx) }()
	s.terms.Add(1)
	s.mu.Lock()
	s.cur = t
	if s.created {
		var cfgs []*config.App
		if cfgs, err = s.appConfigs(); err == nil {
			err = t.startAppsLocked(cfgs)
		}
	}
	s.mu.Unlock()
	if err != nil {
		s.sc.Logger.Error("term's apps not started", "server", r.id, "term", n, "error", err)
	}
	if s.sc.OnTerm != nil {
		s.sc.OnTerm(r.id, n, true)
	}
	<-ctx.Done()
	if s.sc.OnTerm != nil {
		s.sc.OnTerm(r.id, n, false)
	}

	s.mu.Lock()
	if s.cur == t {
		s.cur = nil
	}
	apps := t.apps
	s.mu.Unlock()
	var errs []error
	for _, a := range apps {
		a.stop()
	}
	for _, a := range apps {
		if err := <-a.done; err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.name, err))
		}
	}
	s.mu.Lock()
	for _, a := range apps {
		s.pastPasses.addPasses(a)
	}
	s.mu.Unlock()
	stopFleet()
	if err := <-fleetDone; err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// startAppsLocked creates and runs a controller per app in t's context
// (s.mu held).
func (t *term) startAppsLocked(cfgs []*config.App) error {
	r := t.r
	for _, cfg := range cfgs {
		arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
		if err != nil {
			return err
		}
		ctl, err := controller.New(controller.Options{Config: cfg, Store: r.store, Writer: r.w, Artifacts: arts,
			Host: t.fleet.Host(cfg.Name), Pool: pool.New(pool.Options{Name: cfg.Name, DrainTimeout: time.Second}),
			Logger: t.log, LeaveRunning: r.node != nil})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(t.ctx)
		a := &appRun{name: cfg.Name, ctl: ctl, arts: arts, stop: cancel, done: make(chan error, 1)}
		t.apps = append(t.apps, a)
		go func() { a.done <- ctl.Run(ctx) }()
	}
	return nil
}

// hostEvent keeps one of the fleet's events about a host
// (fleet.Options.OnEvent).
func (t *term) hostEvent(ev api.Event) {
	if !strings.HasPrefix(ev.Reason, "host ") {
		return // an instance's ("stale instance ... stopped")
	}
	t.evMu.Lock()
	defer t.evMu.Unlock()
	if len(t.hostEvents) < maxHostEvents {
		t.hostEvents = append(t.hostEvents, ev)
	}
}

// lostHosts describes the hosts the current term declared lost (their
// generation rose since it began), each with the fleet's events about it
// and when they came, counted from the term's start: "none" if there is
// none, "no term" between terms.
func (s *serverSide) lostHosts() string {
	s.mu.Lock()
	t := s.cur
	s.mu.Unlock()
	if t == nil {
		return "no term"
	}
	var lost []string
	for _, h := range t.fleet.Status() {
		if h.Generation > t.gens[h.Name] {
			lost = append(lost, h.Name)
		}
	}
	if len(lost) == 0 {
		return "none"
	}
	t.evMu.Lock()
	defer t.evMu.Unlock()
	var parts []string
	for _, name := range lost {
		desc := name + ":"
		for _, ev := range t.hostEvents {
			if strings.HasPrefix(ev.Reason, "host "+name+" ") {
				desc += fmt.Sprintf(" [+%s %s]", ev.Time.Sub(t.began).Round(time.Millisecond), ev.Reason)
			}
		}
		parts = append(parts, desc)
	}
	return fmt.Sprintf("%d: %s", len(lost), strings.Join(parts, "; "))
}

// fleet is the leading replica's fleet; nil between terms.
func (s *serverSide) fleet() *fleet.Fleet {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return s.cur.fleet
}

// hostStatus is the leader's fleet's hosts; none between terms.
func (s *serverSide) hostStatus() []api.HostStatus {
	if f := s.fleet(); f != nil {
		return f.Status()
	}
	return nil
}

// appList is the leader's apps; none between terms.
func (s *serverSide) appList() []*appRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return slices.Clone(s.cur.apps)
}
