package config

import (
	"log/slog"

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
	b := a.Balancer
	pc := lb.PoolConfig{
		Name:         a.Name,
		Algorithm:    b.PoolAlgorithm(),
		SlowStart:    b.SlowStart.D(),
		DrainTimeout: b.DrainTimeout.D(),
	}
	if !b.NeedsStickyKey() {
		stickyKey = nil
	}
	pc.Sticky = b.PoolSticky(stickyKey)
	return lb.Config{
		Listeners: []lb.Listener{{Name: UpListener, Addr: b.Listen}},
		Routes:    []lb.Route{{Name: a.Name, PathPrefix: "/", Pool: a.Name, LongLivedPaths: b.LongLivedPaths}},
		Pools:     []lb.PoolConfig{pc},
		Logger:    log,
	}
}
