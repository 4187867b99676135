package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// poolEntry is one pool with what the balancer keeps beside it.
type poolEntry struct {
	cfg PoolConfig
	p   *pool.Pool
	tr  *http.Transport
	// tls is the loaded cfg.TLS; nil for a plain pool.
	tls *targetTLS
	// health is the running checker; nil without a Health spec or before
	// Run. Guarded by Balancer.mu.
	health *healthRun
	m      *poolMetrics
	// up pools the fast path's target connections; stickyPick is set
	// when Pick needs a pool.Key (cookie or SockJS stickiness).
	up         *upstreams
	stickyPick bool
}

// poolOptions maps a pool config to pool.Options.
func poolOptions(pc PoolConfig, b *Balancer) pool.Options {
	o := pool.Options{
		Name:         pc.Name,
		Algorithm:    pc.Algorithm,
		SlowStart:    pc.SlowStart,
		DrainTimeout: pc.DrainTimeout,
		Sticky:       pc.Sticky,
		Outlier:      pc.Outlier,
	}
	if b != nil {
		o.Logger = b.log.With("pool", pc.Name)
		o.OnChange = b.changes.notify
	}
	return o
}

// sameOptions reports whether two pool configs can share one pool.Pool
// (everything but targets, health and transport settings equal).
func sameOptions(a, b PoolConfig) bool {
	return reflect.DeepEqual(poolOptions(a, nil), poolOptions(b, nil))
}

func (b *Balancer) newPoolEntry(pc PoolConfig, lim Limits) (*poolEntry, error) {
	tt, err := pc.loadTLS()
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", pc.Name, err)
	}
	p := pool.New(poolOptions(pc, b))
	for _, t := range pc.Targets {
		if err := p.Add(t); err != nil {
			return nil, fmt.Errorf("pool %s: %w", pc.Name, err)
		}
	}
	pe := &poolEntry{cfg: pc, p: p, tls: tt, m: b.metrics.forPool(pc.Name),
		up: newUpstreams(pc, lim), stickyPick: pc.Sticky.Cookie != "" || len(pc.Sticky.SockJSPrefixes) > 0}
	pe.tr = b.newTransport(pc, lim, tt)
	return pe, nil
}

// loadTLS loads pc.TLS; nil for a plain pool.
func (pc PoolConfig) loadTLS() (*targetTLS, error) {
	if pc.TLS == nil {
		return nil, nil
	}
	return loadTargetTLS(pc.TLS, pc.Protocol)
}

// fast reports whether the fast path's own target connections serve the
// pool: plain HTTP/1.1 only. Requests for HTTP/2 and TLS pools are
// handed to the net/http path.
func (pe *poolEntry) fast() bool {
	return pe.cfg.Protocol == ProtocolHTTP1 && pe.tls == nil
}

// scheme is the scheme of the requests the pool's transport sends.
func (pe *poolEntry) scheme() string {
	if pe.tls != nil {
		return "https"
	}
	return "http"
}

// dialError marks an error from connecting to a target: the request never
// reached it, so any request may be retried.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// newTransport builds the upstream transport of a pool: HTTP/1.1 only,
// keep-alive with MaxIdlePerHost idle connections per target, no
// compression (bodies pass through untouched), the pool's connect timeout,
// and its try timeout until response headers. A pool with TLS (tt) gets
// newTLSTransport's, an h2c pool newH2CTransport's.
func (b *Balancer) newTransport(pc PoolConfig, lim Limits, tt *targetTLS) *http.Transport {
	if tt != nil {
		fails := &tlsFailures{log: b.log.With("pool", pc.Name), count: b.metrics.tlsFailure(pc.Name)}
		tt.fails.Store(fails)
		return newTLSTransport(pc, lim, tt, fails)
	}
	if pc.Protocol == ProtocolH2C {
		return newH2CTransport(pc, lim)
	}
	return &http.Transport{
		DialContext:            dialTarget(pc),
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    lim.MaxIdlePerHost,
		IdleConnTimeout:        lim.UpstreamIdle,
		ResponseHeaderTimeout:  max(pc.TryTimeout, 0), // negative: off
		DisableCompression:     true,
		ForceAttemptHTTP2:      false,
		TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
}

// dialTarget is the transports' dial: the pool's connect timeout, TCP
// keep-alive, and failures marked as dialError.
func dialTarget(pc PoolConfig) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: pc.ConnectTimeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
}

// AddPool adds a pool at run time (the controller adds one per group). Its
// name must be new; routes to it come with the next Reload. The config is
// validated like in New.
func (b *Balancer) AddPool(pc PoolConfig) error {
	pc = poolDefaults(pc)
	if pc.Name == "" {
		return errors.New("add pool: name required")
	}
	if errs := validatePool(pc); len(errs) > 0 {
		for i := range errs {
			errs[i] = fmt.Errorf("pools.%s%w", pc.Name, errs[i])
		}
		return fmt.Errorf("add pool: %w", errors.Join(errs...))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.pools[pc.Name]; ok {
		return fmt.Errorf("add pool %s: already exists", pc.Name)
	}
	pe, err := b.newPoolEntry(pc, b.cfg.Limits)
	if err != nil {
		return err
	}
	b.pools[pc.Name] = pe
	b.cfg.Pools = append(append([]PoolConfig(nil), b.cfg.Pools...), pc)
	if b.running && !b.stopping {
		b.startHealthLocked(pe)
	}
	b.changes.notify()
	return nil
}

// RemovePool drains and removes every target of a pool that no route
// uses, then forgets the pool. It does not wait for the drain.
func (b *Balancer) RemovePool(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	pe := b.pools[name]
	if pe == nil {
		return fmt.Errorf("remove pool %s: %w", name, pool.ErrNotFound)
	}
	for _, r := range b.cfg.Routes {
		if r.Pool == name {
			return fmt.Errorf("remove pool %s: route %s uses it", name, r.Name)
		}
	}
	delete(b.pools, name)
	var kept []PoolConfig
	for _, pc := range b.cfg.Pools {
		if pc.Name != name {
			kept = append(kept, pc)
		}
	}
	b.cfg.Pools = kept
	b.retireLocked(pe)
	b.changes.notify()
	return nil
}

// retireLocked stops pe's checker and drains all its targets; the
// transport's idle connections are closed once every target is idle.
func (b *Balancer) retireLocked(pe *poolEntry) {
	b.stopHealthLocked(pe)
	b.metrics.dropPool(pe)
	if b.stopping {
		return
	}
	var waits []<-chan struct{}
	for _, t := range pe.p.Targets() {
		if ch, err := pe.p.Remove(t.Addr()); err == nil {
			waits = append(waits, ch)
		}
	}
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		for _, ch := range waits {
			select {
			case <-ch:
			case <-b.bgCtx.Done():
				return
			}
		}
		pe.tr.CloseIdleConnections()
		pe.up.closeIdle(true)
	}()
}
