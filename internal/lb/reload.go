package lb

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/shoal-dev/shoal/internal/pool"
)

// Reload validates cfg and swaps it in atomically. Requests in flight
// finish on the configuration they started with; new requests see the new
// one as a whole. Listeners are diffed by name: one with the same name and
// address keeps its socket and connections (its certificates and route
// list are updated; its Limits are those it was created with), new ones
// are bound at once (a bind error rejects the reload), removed ones stop
// accepting and shut down gracefully. Pools are diffed by name: a pool
// whose algorithm, stickiness, outlier, slow-start and drain settings are
// unchanged keeps its targets with their state and connections, adds the
// new targets, updates weights, and drains then removes targets that are
// gone; a pool whose settings changed is rebuilt and the old one drained.
// Maintenance mode turned on with SetMaintenance stays on across a Reload
// whose cfg.Maintenance is nil (a non-nil one replaces it); only
// SetMaintenance(nil) turns it off. An invalid cfg is rejected with every
// reason and the old configuration keeps serving.
func (b *Balancer) Reload(cfg Config) error {
	cfg = withDefaults(cfg)
	if err := validate(cfg); err != nil {
		return fmt.Errorf("reload rejected: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping {
		return errors.New("reload rejected: balancer is shutting down")
	}

	// Listeners: prepare everything that can fail before changing anything.
	newLs := map[string]*listener{}
	var added []*listener
	var kept []*listener
	var errs []error
	abort := func() {
		for _, l := range added {
			if l.ln != nil {
				l.ln.Close()
				l.raw.Close()
			}
		}
	}
	for _, lc := range cfg.Listeners {
		tc, cw, err := b.listenerTLS(lc)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %s: %w", lc.Name, err))
			continue
		}
		old := b.listeners[lc.Name]
		if old != nil && old.cfg.Addr == lc.Addr {
			if (old.tlsCfg != nil) != (tc != nil) {
				errs = append(errs, fmt.Errorf("listener %s: switching %s between TLS and plain HTTP needs a restart", lc.Name, lc.Addr))
				continue
			}
			nl := *old
			nl.cfg, nl.tlsCfg, nl.certs = lc, tc, cw
			newLs[lc.Name] = old
			kept = append(kept, &nl)
			continue
		}
		nl := b.newListener(lc, tc, cw, cfg.Limits)
		if b.listening {
			if err := b.bind(nl, cfg.Limits, nil); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		added = append(added, nl)
		newLs[lc.Name] = nl
	}
	if len(errs) > 0 {
		abort()
		return fmt.Errorf("reload rejected: %w", errors.Join(errs...))
	}

	// Commit. Nothing below fails.
	var removed []*listener
	for name, l := range b.listeners {
		if newLs[name] != l {
			removed = append(removed, l)
		}
	}
	for _, nl := range kept {
		old := b.listeners[nl.cfg.Name]
		old.cfg = nl.cfg
		if nl.certs != nil && old.certs != nil {
			// The listener's TLS config serves old.certs: give it the
			// newly loaded pairs.
			old.certs.replace(nl.certs)
		}
	}
	retired := b.reconcilePoolsLocked(cfg)
	b.listeners = newLs
	if cfg.Maintenance != nil {
		b.maint.Store(cfg.Maintenance)
	} else {
		cfg.Maintenance = b.maint.Load()
	}
	b.cfg = cfg
	b.alog.Store(newAccessLog(cfg.AccessLog))
	b.setObserver(cfg.Observer)
	b.tbl.Store(b.buildTable(cfg, b.tbl.Load().budget))
	// Pools are retired only once the new table is in place: a request
	// that loaded the old table in between would find the old pool's
	// targets removed and get a 503.
	for _, pe := range retired {
		b.retireLocked(pe)
	}
	for _, l := range added {
		if b.running {
			b.serveLocked(l)
		}
	}
	for _, l := range removed {
		b.closeListenerLocked(l)
	}
	b.changes.notify()
	b.log.Info("configuration reloaded", "listeners", len(cfg.Listeners), "routes", len(cfg.Routes), "pools", len(cfg.Pools))
	return nil
}

// closeListenerLocked stops a removed listener gracefully in the
// background (Run waits for it).
func (b *Balancer) closeListenerLocked(l *listener) {
	if l.served == nil {
		if l.ln != nil {
			l.ln.Close()
		}
		if l.raw != nil {
			l.raw.Close()
		}
		return
	}
	timeout, hdrTimeout := b.cfg.Limits.ShutdownTimeout, b.cfg.Limits.HeaderTimeout
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		l.shutdown(ctx, hdrTimeout)
		l.close()
		<-l.served
	}()
}

// reconcilePoolsLocked moves b.pools to cfg.Pools and returns the pool
// entries that are no longer used, for the caller to retire once the
// routing table that names them is replaced.
func (b *Balancer) reconcilePoolsLocked(cfg Config) []*poolEntry {
	next := map[string]*poolEntry{}
	for _, pc := range cfg.Pools {
		old := b.pools[pc.Name]
		if old == nil || !sameOptions(old.cfg, pc) || readdsRemoved(old.p, pc.Targets) {
			pe, err := b.newPoolEntry(pc, cfg.Limits)
			if err != nil {
				// Validated before; a failure here is a bug, keep serving.
				b.log.Error("rebuild pool", "pool", pc.Name, "error", err)
				if old != nil {
					next[pc.Name] = old
				}
				continue
			}
			next[pc.Name] = pe
			b.startHealthLocked(pe)
			continue
		}
		tt, err := pc.loadTLS()
		if err != nil {
			// Checked by validate moments ago: the file changed since.
			b.log.Error("reload pool TLS files; the pool keeps its old TLS settings", "pool", pc.Name, "error", err)
			tt, pc.TLS, pc.Protocol = old.tls, old.cfg.TLS, old.cfg.Protocol
		}
		ne := &poolEntry{cfg: pc, p: old.p, tr: old.tr, tls: old.tls, m: old.m, health: old.health, up: old.up, stickyPick: old.stickyPick}
		tlsChanged := (tt == nil) != (old.tls == nil) || tt != nil && tt.sum != old.tls.sum
		if pc.ConnectTimeout != old.cfg.ConnectTimeout || pc.TryTimeout != old.cfg.TryTimeout || pc.Protocol != old.cfg.Protocol || tlsChanged ||
			cfg.Limits.MaxIdlePerHost != b.cfg.Limits.MaxIdlePerHost || cfg.Limits.UpstreamIdle != b.cfg.Limits.UpstreamIdle {
			ne.tls = tt
			ne.tr = b.newTransport(pc, cfg.Limits, tt)
			old.tr.CloseIdleConnections()
			ne.up = newUpstreams(pc, cfg.Limits)
			old.up.closeIdle(true)
		}
		b.diffTargets(old.p, pc.Targets)
		if !reflect.DeepEqual(old.cfg.Health, pc.Health) || pc.Protocol != old.cfg.Protocol || ne.tr != old.tr && !(ne.fast() && old.fast()) {
			// Probes of HTTP/2 and TLS pools go over the pool's transport.
			b.stopHealthLocked(ne)
			b.startHealthLocked(ne)
		} else if ne.health != nil {
			syncHealth(ne.health.c, ne.p)
		}
		next[pc.Name] = ne
	}
	var retired []*poolEntry
	for name, old := range b.pools {
		if n := next[name]; n == nil || n.p != old.p {
			retired = append(retired, old)
		}
	}
	b.pools = next
	return retired
}

// readdsRemoved reports whether targets lists a target that p is still
// draining for removal. The pool cannot take it back (Undrain refuses a
// target being removed), so the caller rebuilds the pool instead, which keeps every
// listed target in service without a gap at the cost of their passive
// state (EWMA, ejections).
func readdsRemoved(p *pool.Pool, targets []pool.TargetSpec) bool {
	want := map[string]bool{}
	for _, t := range targets {
		want[t.Addr] = true
	}
	for _, ts := range p.Status().Targets {
		if want[ts.Addr] && ts.State == pool.StateDraining.String() && ts.Reason == "removing" {
			return true
		}
	}
	return false
}

// diffTargets applies a target list to a kept pool.
// A target that is draining and still listed stays draining: a drain
// is the operator's, and only Undrain (shoal lb undrain) ends it.
func (b *Balancer) diffTargets(p *pool.Pool, after []pool.TargetSpec) {
	want := map[string]pool.TargetSpec{}
	for _, t := range after {
		want[t.Addr] = t
	}
	current := p.Targets()
	have := map[string]bool{}
	for _, t := range current {
		have[t.Addr()] = true
	}
	// Add before removing, so the pool is never empty in between.
	for _, t := range after {
		if !have[t.Addr] {
			if err := p.Add(t); err != nil {
				b.log.Warn("reload: add target", "pool", p.Name(), "target", t.Addr, "error", err)
			}
			continue
		}
		if err := p.SetWeight(t.Addr, t.Weight); err != nil {
			b.log.Warn("reload: set weight", "pool", p.Name(), "target", t.Addr, "error", err)
		}
	}
	for _, t := range current {
		if _, ok := want[t.Addr()]; !ok && t.State() != pool.StateDraining {
			p.Remove(t.Addr())
		}
	}
}

// SetRoutes replaces the route table and nothing else: listeners, pools
// and their targets stay as they are. It is for a balancer whose pools'
// targets are managed at run time (AddPool, then a controller adds and
// removes the targets), which a Reload would reset to the configuration's
// static targets: `shoal server` sets the routes of every app after each
// app's change. routes must name pools the balancer has (AddPool); an
// invalid table is rejected with every reason and the old one keeps
// serving. Requests in flight finish on the table they started with.
func (b *Balancer) SetRoutes(routes []Route) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	cfg := b.cfg
	cfg.Routes = slices.Clone(routes)
	cfg = withDefaults(cfg)
	if err := validate(cfg); err != nil {
		return fmt.Errorf("set routes: %w", err)
	}
	b.cfg.Routes = cfg.Routes
	b.tbl.Store(b.buildTable(b.cfg, b.tbl.Load().budget))
	b.changes.notify()
	b.log.Info("routes set", "routes", len(cfg.Routes))
	return nil
}
