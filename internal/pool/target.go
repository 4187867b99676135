package pool

import (
	"context"
	"hash/fnv"
	"sync/atomic"
	"time"
)

// Target is one backend address in a pool. Targets are created by Pool.Add
// and live until Pool.Remove deletes them; the proxy keeps the *Target it
// picked for the whole request, so a removed target still accepts End. All
// methods are safe for concurrent use.
type Target struct {
	p       *Pool
	addr    string
	hrwSeed uint64 // rendezvous-hash seed, from addr: stable across nodes

	// life is the target's context and its cancel; replaced (under p.mu)
	// when an undrained target's old context had been canceled.
	life atomic.Pointer[targetLife]

	// Hot-path counters, updated without the pool lock.
	inflight  atomic.Int64
	requests  atomic.Int64
	ejections atomic.Int64
	failures  atomic.Int32 // consecutive failures for outlier detection
	ewma      atomic.Int64 // TTFB estimate in nanoseconds; 0 = no sample
	draining  atomic.Bool  // mirror of drain != nil for End

	// Guarded by p.mu.
	weight       int
	id           TargetID // sticky cookie id; zero without cookie stickiness
	healthy      bool     // last active health verdict
	ejectedUntil time.Time
	ejectedAt    time.Time // start of the current or last ejection
	ejectCount   int       // ejection multiplier
	lastReturn   time.Time // end of the last ejection
	drain        *drainState
	state        State
	reason       string
	since        time.Time
	rampStart    time.Time // slow start began; zero once ramped

	// Guarded by p.least.mu (LeastRequests pools only): the target's place
	// in the load heap (-1 when not a candidate), effective weight units,
	// load key and tie-break sequence.
	lpos   int32
	lunits int64
	lkey   uint64
	lseq   uint64
}

// drainState is a target's drain in progress, guarded by p.mu.
type drainState struct {
	idle     chan struct{}
	closed   bool        // idle is closed
	timer    *time.Timer // deadline; nil when none was armed
	removing bool        // delete the target once idle
}

func newTarget(p *Pool, addr string, weight int) *Target {
	t := &Target{p: p, addr: addr, weight: weight, lpos: -1}
	t.life.Store(newTargetLife())
	h := fnv.New64a()
	h.Write([]byte(addr))
	t.hrwSeed = h.Sum64()
	if p.cookie != "" {
		t.id = NewTargetID(p.secret, addr)
	}
	return t
}

// derive computes the state from its inputs; p.mu must be held.
func (t *Target) derive(now time.Time) State {
	switch {
	case t.drain != nil:
		return StateDraining
	case !t.healthy:
		return StateUnhealthy
	case now.Before(t.ejectedUntil):
		return StateEjected
	}
	return StateHealthy
}

// Addr returns the target's host:port.
func (t *Target) Addr() string { return t.addr }

// State returns the target's current state. An ejection that has expired
// reads as ejected until the pool next refreshes (on Pick or Status).
func (t *Target) State() State {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	return t.state
}

// InFlight returns the number of Begin calls not yet matched by End.
func (t *Target) InFlight() int64 { return t.inflight.Load() }

// Begin records the start of a request or stream on t. Every Begin must be
// matched by exactly one End, which for a WebSocket is when the tunnel
// closes. It does not block or allocate.
func (t *Target) Begin() {
	t.inflight.Add(1)
	t.requests.Add(1)
	if x := t.p.least; x != nil {
		x.update(t)
	}
}

// ewmaAlpha is the weight of a new TTFB sample in tenths (0.3).
const ewmaAlpha = 3

// End records the end of a request begun with Begin and its outcome: the
// TTFB feeds the latency estimate (connection errors do not), and failures
// feed passive ejection. When a draining target's in-flight count reaches
// zero its idle channel is closed (and a removed target is deleted). End
// takes the pool lock only for those two rare events.
func (t *Target) End(o Outcome) {
	n := t.inflight.Add(-1)
	if x := t.p.least; x != nil {
		x.update(t)
	}
	if !o.ConnErr && o.TTFB > 0 {
		for {
			old := t.ewma.Load()
			v := int64(o.TTFB)
			if old != 0 {
				v = old + (v-old)*ewmaAlpha/10
			}
			if t.ewma.CompareAndSwap(old, v) {
				break
			}
		}
	}
	p := t.p
	if k := p.outlier.ConsecutiveFailures; k > 0 {
		if o.ConnErr || o.Status >= 500 {
			if t.failures.Add(1) == int32(k) {
				p.eject(t)
			}
		} else if t.failures.Load() != 0 {
			t.failures.Store(0)
		}
	}
	if n <= 0 && t.draining.Load() {
		p.mu.Lock()
		p.finishDrainLocked(t)
		p.unlock()
	}
}

// Context is canceled with cause ErrDrainDeadline when a drain deadline
// passes while requests are still in flight; the proxy watches it (for
// example with context.AfterFunc) and ends the target's requests and
// tunnels. It is never canceled otherwise.
//
// A target put back with Pool.Undrain after its context was canceled gets
// a new one: requests that start after Undrain see it.
func (t *Target) Context() context.Context { return t.life.Load().ctx }

// targetLife is a context of a target and its cancel function.
type targetLife struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func newTargetLife() *targetLife {
	l := &targetLife{}
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	return l
}
