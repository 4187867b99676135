package pool

import (
	"context"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	minSecret           = 16
	defaultDrainTimeout = 30 * time.Second
	defaultBaseEjection = 30 * time.Second
	defaultMaxEjection  = 300 * time.Second
	defaultMaxEjectPct  = 50
)

// Pool is the set of targets of one balancer pool. The zero value is not
// usable; call New. All methods are safe for concurrent use.
type Pool struct {
	name     string
	algo     Algorithm
	slow     time.Duration
	drainTO  time.Duration
	outlier  Outlier
	now      func() time.Time
	rand     func(int) int
	log      *slog.Logger
	onChange func()
	// release counts the releases the pool's targets served, for caches
	// in front of it (see NewRelease).
	release atomic.Uint64

	cookie  string // empty: no cookie stickiness
	ttl     time.Duration
	secret  []byte
	sockjs  []string
	anyPick bool // cookie or sockjs configured: Pick looks at the request

	snap atomic.Pointer[snapshot]
	// least orders the candidates by load; non-nil for LeastRequests only.
	least *leastIndex
	rr    atomic.Uint64 // round-robin position, shared across snapshots

	mu      sync.Mutex
	targets []*Target // in Add order; guarded by mu
	byAddr  map[string]*Target
	// logs are the lines queued under mu (state changes), written by
	// unlock once mu is released: no I/O under the lock.
	logs []logLine
	// changed is set under mu by a change that Options.OnChange reports;
	// unlock clears it and calls OnChange.
	changed bool
}

// logLine is a log record queued under the pool's lock.
type logLine struct {
	level slog.Level
	msg   string
	args  []any
}

// logLocked queues a log line; unlock writes it.
func (p *Pool) logLocked(level slog.Level, msg string, args ...any) {
	p.logs = append(p.logs, logLine{level, msg, args})
}

// unlock releases mu, then writes the lines queued under it, in order,
// and reports a change marked under it to Options.OnChange.
func (p *Pool) unlock() {
	logs := p.logs
	p.logs = nil
	changed := p.changed
	p.changed = false
	p.mu.Unlock()
	for _, l := range logs {
		p.log.Log(context.Background(), l.level, l.msg, l.args...)
	}
	if changed && p.onChange != nil {
		p.onChange()
	}
}

// New returns an empty pool configured by o, with defaults applied. It
// never fails: an Options.Validate error in the sticky secret disables
// cookie stickiness (logged at Error) rather than weakening it.
func New(o Options) *Pool {
	p := &Pool{
		name:     o.Name,
		algo:     o.Algorithm,
		slow:     o.SlowStart,
		drainTO:  o.DrainTimeout,
		outlier:  o.Outlier,
		now:      o.Now,
		rand:     o.Rand,
		log:      o.Logger,
		onChange: o.OnChange,
		ttl:      o.Sticky.TTL,
		byAddr:   make(map[string]*Target),
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.rand == nil {
		p.rand = mrand.IntN
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.algo > P2C {
		p.algo = RoundRobin
	}
	if p.algo == LeastRequests {
		p.least = &leastIndex{}
	}
	if p.drainTO <= 0 {
		p.drainTO = defaultDrainTimeout
	}
	if p.slow < 0 {
		p.slow = 0
	}
	if p.ttl < 0 {
		p.ttl = 0
	}
	if p.outlier.BaseEjection <= 0 {
		p.outlier.BaseEjection = defaultBaseEjection
	}
	if p.outlier.MaxEjection <= 0 {
		p.outlier.MaxEjection = defaultMaxEjection
	}
	if p.outlier.MaxEjection < p.outlier.BaseEjection {
		p.outlier.MaxEjection = p.outlier.BaseEjection
	}
	if p.outlier.MaxEjectedPercent <= 0 || p.outlier.MaxEjectedPercent > 100 {
		p.outlier.MaxEjectedPercent = defaultMaxEjectPct
	}
	if c := o.Sticky.Cookie; c != "" {
		if len(o.Sticky.Secret) < minSecret {
			p.log.Error("sticky cookie disabled: secret shorter than 16 bytes", "cookie", c)
		} else {
			p.cookie = c
			p.secret = append([]byte(nil), o.Sticky.Secret...)
		}
	}
	for _, pre := range o.Sticky.SockJSPrefixes {
		// "/" becomes "", which matches /<server>/<session>/<transport>.
		p.sockjs = append(p.sockjs, strings.TrimRight(pre, "/"))
	}
	p.anyPick = p.cookie != "" || len(p.sockjs) > 0
	p.snap.Store(&snapshot{})
	// Start round robin at a random place so that several balancers (or a
	// restarted one) do not all send their first request to one target.
	p.rr.Store(uint64(p.rand(1 << 30)))
	return p
}

// Name returns Options.Name.
func (p *Pool) Name() string { return p.name }

// Add adds a target. It starts healthy (and ramps up under slow start)
// unless s.Unhealthy, in which case it waits for SetHealth(addr, true).
// It returns ErrExists when s.Addr is in the pool, including while it
// drains, and an error for an empty address or a weight outside 0-256.
func (p *Pool) Add(s TargetSpec) error {
	if s.Addr == "" {
		return fmt.Errorf("add target: empty address")
	}
	w, err := checkWeight(s.Weight)
	if err != nil {
		return fmt.Errorf("add target %s: %w", s.Addr, err)
	}
	t := newTarget(p, s.Addr, w)
	p.mu.Lock()
	defer p.unlock()
	if _, ok := p.byAddr[s.Addr]; ok {
		return fmt.Errorf("add target %s: %w", s.Addr, ErrExists)
	}
	now := p.now()
	t.healthy = !s.Unhealthy
	t.state = t.derive(now)
	t.since = now
	t.reason = "added"
	if s.Unhealthy {
		t.reason = "added, awaiting health check"
	}
	if t.state == StateHealthy {
		t.rampStart = now
	}
	p.targets = append(p.targets, t)
	p.byAddr[s.Addr] = t
	p.changed = true
	p.logStateLocked(t)
	p.rebuildLocked(now)
	return nil
}

func checkWeight(w int) (int, error) {
	if w < 0 || w > MaxWeight {
		return 0, fmt.Errorf("weight %d not in 0-%d", w, MaxWeight)
	}
	if w == 0 {
		w = 1
	}
	return w, nil
}

// SetWeight changes a target's weight (0 means 1, at most 256). It returns
// ErrNotFound for an unknown address.
func (p *Pool) SetWeight(addr string, weight int) error {
	w, err := checkWeight(weight)
	if err != nil {
		return fmt.Errorf("set weight of %s: %w", addr, err)
	}
	p.mu.Lock()
	defer p.unlock()
	t := p.byAddr[addr]
	if t == nil {
		return fmt.Errorf("set weight of %s: %w", addr, ErrNotFound)
	}
	if t.weight != w {
		t.weight = w
		p.changed = true
		p.rebuildLocked(p.now())
	}
	return nil
}

// SetHealth records the active health verdict for a target; reason (such as
// "status 500") explains it and defaults to "health check passed" or
// "health check failed". A healthy verdict does not end a drain, nor by
// itself a passive ejection (ProbePassed does, for every passing probe).
// It returns ErrNotFound for an unknown address.
func (p *Pool) SetHealth(addr string, healthy bool, reason string) error {
	p.mu.Lock()
	defer p.unlock()
	t := p.byAddr[addr]
	if t == nil {
		return fmt.Errorf("set health of %s: %w", addr, ErrNotFound)
	}
	if t.healthy == healthy {
		return nil
	}
	t.healthy = healthy
	switch {
	case healthy && reason == "":
		reason = "health check passed"
	case healthy:
		reason = "health check passed: " + reason
	case reason == "":
		reason = "health check failed"
	default:
		reason = "health check failed: " + reason
	}
	now := p.now()
	if p.transitionLocked(t, now, reason) {
		p.rebuildLocked(now)
	}
	return nil
}

// Targets returns every target in the pool, draining ones included, in the
// order they were added. The slice is the caller's.
func (p *Pool) Targets() []*Target {
	p.mu.Lock()
	defer p.unlock()
	return append([]*Target(nil), p.targets...)
}

// Status returns a point-in-time view of the pool. It first applies
// time-driven changes that are due (ends of ejections, slow-start steps).
func (p *Pool) Status() Status {
	now := p.now()
	p.mu.Lock()
	defer p.unlock()
	p.refreshLocked(now)
	s := p.snap.Load()
	st := Status{Name: p.name, Healthy: s.healthy, FailOpen: s.failOpen}
	st.Targets = make([]TargetStatus, 0, len(p.targets))
	for _, t := range p.targets {
		ts := TargetStatus{
			Addr:      t.addr,
			State:     t.state.String(),
			Reason:    t.reason,
			Weight:    t.weight,
			InFlight:  t.inflight.Load(),
			EWMA:      time.Duration(t.ewma.Load()),
			Ejections: t.ejections.Load(),
			Requests:  t.requests.Load(),
			Since:     t.since,
		}
		if u, ok := s.units(t); ok {
			ts.EffectiveWeight = float64(u) / unitsPerWeight
		}
		st.Targets = append(st.Targets, ts)
	}
	return st
}

// transitionLocked re-derives t's state after a change to its inputs and,
// when the state changed, records reason, logs it and starts slow start on
// a return to healthy. It reports whether the state changed.
func (p *Pool) transitionLocked(t *Target, now time.Time, reason string) bool {
	st := t.derive(now)
	if st == t.state {
		return false
	}
	if st == StateHealthy {
		t.rampStart = now
	}
	if t.state == StateEjected {
		t.lastReturn = now
	}
	t.state, t.reason, t.since = st, reason, now
	p.changed = true
	p.logStateLocked(t)
	return true
}

func (p *Pool) logStateLocked(t *Target) {
	p.logLocked(slog.LevelInfo, "target state", "target", t.addr, "state", t.state.String(), "reason", t.reason)
}

// refreshLocked applies due time-driven changes and rebuilds the snapshot
// when one is due.
func (p *Pool) refreshLocked(now time.Time) {
	w := p.snap.Load().wakeAt
	if w == 0 || now.UnixNano() < w {
		return
	}
	for _, t := range p.targets {
		if t.state == StateEjected && !now.Before(t.ejectedUntil) {
			p.transitionLocked(t, now, "ejection ended")
		}
	}
	p.rebuildLocked(now)
}

// refresh is refreshLocked for the hot path: it returns the current
// snapshot after taking the lock only if another caller has not already
// done the work.
func (p *Pool) refresh(now time.Time) *snapshot {
	p.mu.Lock()
	p.refreshLocked(now)
	s := p.snap.Load()
	p.unlock()
	return s
}

// deleteLocked removes t from the pool.
func (p *Pool) deleteLocked(t *Target) {
	if p.byAddr[t.addr] != t {
		return
	}
	delete(p.byAddr, t.addr)
	for i, x := range p.targets {
		if x == t {
			p.targets = append(p.targets[:i:i], p.targets[i+1:]...)
			break
		}
	}
	p.changed = true
	p.logLocked(slog.LevelInfo, "target removed", "target", t.addr)
	p.rebuildLocked(p.now())
}
