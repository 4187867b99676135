package config

import (
	"log/slog"
	"strings"

	"github.com/shoal-dev/shoal/internal/lb"
)

// UpListener is the name of the one balancer listener of `shoal up`, as
// lb.Balancer.Addr and the balancer's status name it.
const UpListener = "http"

// StickyKeyName is the name under which `shoal up` keeps the sticky
// cookie's signing key of app in its store (store.Store.Key), so that pins
// survive a restart.
func StickyKeyName(app string) string { return "sticky-" + app }

// NeedsStickyKey reports whether the balancer section signs a sticky
// cookie, and so whether BalancerConfig needs a key.
func (b AppBalancer) NeedsStickyKey() bool { return b.Sticky != nil && b.Sticky.Cookie != "" }

// BalancerConfig builds the balancer of `shoal up` from shoal.yaml, as
// LoadLB builds it from lb.yaml: one listener (UpListener) on
// balancer.listen, one route "/" to one pool named after the app, no
// static targets (the controller adds instances as they come into
// service) and no active checks of its own (the controller checks the
// instances). stickyKey signs the sticky cookie when NeedsStickyKey and
// is ignored otherwise. log becomes the balancer's logger; the caller sets
// the Observer.
//
// Load validated every field read here (app_validate.go, with
// file:line:column), as LoadLB validates lb.yaml before building its
// lb.Config; lb.New checks the result again.
func (a *App) BalancerConfig(stickyKey []byte, log *slog.Logger) lb.Config {
	return lb.Config{
		Listeners: []lb.Listener{{Name: UpListener, Addr: a.Balancer.Listen}},
		Routes:    []lb.Route{{Name: a.Name, PathPrefix: "/", Pool: a.Name, LongLivedPaths: a.Balancer.LongLivedPaths, Compression: a.Balancer.Compression.LB(), Cache: a.Balancer.Cache.LB()}},
		Pools:     []lb.PoolConfig{a.PoolConfig(stickyKey)},
		Logger:    log,
	}
}

// PoolConfig is the balancer pool of the app's instances, named after the
// app: algorithm, slow start, drain timeout and stickiness (signed with
// stickyKey when NeedsStickyKey; ignored otherwise), no static targets (the
// controller adds instances as they come into service) and no active
// checks (the controller checks the instances).
func (a *App) PoolConfig(stickyKey []byte) lb.PoolConfig {
	b := a.Balancer
	pc := lb.PoolConfig{
		Name:         a.Name,
		Algorithm:    b.PoolAlgorithm(),
		SlowStart:    b.SlowStart.D(),
		DrainTimeout: b.DrainTimeout.D(),
	}
	// Validated by Load: an unknown name never reaches here.
	pc.Protocol, _ = lb.ParseProtocol(b.Protocol)
	if !b.NeedsStickyKey() {
		stickyKey = nil
	}
	pc.Sticky = b.PoolSticky(stickyKey)
	return pc
}

// Routes are the app's routes on `shoal server`'s shared balancer, to the
// pool named after the app: one per balancer.hosts entry (lowercased),
// each under balancer.path, or, without hosts, one catch-all route for
// any host. Route names are the app's name, and "app host" when the app
// has hosts, so they are unique across apps.
func (a *App) Routes() []lb.Route {
	b := a.Balancer
	path := b.Path
	if path == "" {
		path = "/"
	}
	if len(b.Hosts) == 0 {
		return []lb.Route{{Name: a.Name, PathPrefix: path, Pool: a.Name, LongLivedPaths: b.LongLivedPaths, Compression: b.Compression.LB(), Cache: b.Cache.LB()}}
	}
	out := make([]lb.Route, 0, len(b.Hosts))
	for _, h := range b.Hosts {
		h = strings.ToLower(h)
		out = append(out, lb.Route{Name: a.Name + " " + h, Host: h, PathPrefix: path, Pool: a.Name, LongLivedPaths: b.LongLivedPaths, Compression: b.Compression.LB(), Cache: b.Cache.LB()})
	}
	return out
}
