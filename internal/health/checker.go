package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Errors returned by Checker methods.
var (
	ErrExists   = errors.New("health target already exists")
	ErrNotFound = errors.New("health target not found")
	ErrRunning  = errors.New("health checker already ran")
)

// State is a target's health verdict.
type State uint8

const (
	Unknown   State = iota // not yet determined
	Healthy                // HealthyThreshold consecutive passes
	Unhealthy              // UnhealthyThreshold consecutive failures
)

// String returns "unknown", "healthy" or "unhealthy".
func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	}
	return "unknown"
}

// Result is a reported transition of one target.
type Result struct {
	Addr    string
	Healthy bool
	// Reason is the outcome of the probe that decided it, such as
	// "status 200", "status 500", "timeout after 2s" or
	// "connection refused".
	Reason string
}

// TargetOpts are per-target options for Add.
type TargetOpts struct {
	// Grace is a period after Add during which failed probes do not count
	// towards unhealthy (slow-booting apps such as Meteor); passes count.
	Grace time.Duration
	// InitiallyHealthy starts the target as Healthy, so only a change to
	// unhealthy is reported. Otherwise it starts Unknown and its first
	// verdict, either way, is reported.
	InitiallyHealthy bool
}

// TargetStatus is a point-in-time view of one target.
type TargetStatus struct {
	Addr  string
	State State
	// Reason is the outcome of the last probe ("" before the first).
	Reason string
	// Passes and Failures are the current consecutive counts (failures in
	// grace are not counted).
	Passes, Failures int
	// Checks counts completed probes since Add.
	Checks    int64
	LastCheck time.Time
	InGrace   bool
}

// Option configures a Checker.
type Option func(*Checker)

// WithLogger sets the logger for transitions (Info); nil discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *Checker) {
		if l != nil {
			c.log = l
		}
	}
}

// WithClient replaces the probe HTTP client. Without it every probe
// opens a new connection, as a real client would (see NewProber), ignores
// proxy environment variables and follows no redirects.
func WithClient(hc *http.Client) Option {
	return func(c *Checker) {
		if hc != nil {
			c.client = hc
		}
	}
}

// WithOnPass sets fn to be called after every passing probe of a target,
// with the time the probe started, whatever the target's state (report
// is called only on transitions). The balancer uses it to end a passive
// ejection of a target that passes its checks again. fn is called like
// report: from the target's probe goroutine, with no lock held.
func WithOnPass(fn func(addr string, started time.Time)) Option {
	return func(c *Checker) { c.onPass = fn }
}

// Checker probes a set of targets with one Spec. Add and Remove may be
// called before and during Run and are safe for concurrent use; probing
// happens only while Run runs.
type Checker struct {
	spec   Spec
	report func(Result)
	onPass func(addr string, started time.Time) // nil: none
	log    *slog.Logger
	client *http.Client
	prober *Prober

	mu      sync.Mutex
	targets map[string]*target
	ctx     context.Context // Run's; nil when not running
	ran     bool
	wg      sync.WaitGroup
}

type target struct {
	addr   string
	opts   TargetOpts
	added  time.Time
	cancel context.CancelFunc // nil until its probe loop starts

	// Guarded by Checker.mu.
	removed   bool
	state     State
	reason    string
	passes    int
	failures  int
	checks    int64
	lastCheck time.Time
}

// New returns a Checker for spec (defaults applied) that calls report on
// every transition of a target: Unknown to Healthy or Unhealthy, and
// between Healthy and Unhealthy. report is called from the target's probe
// goroutine, never with a lock held, one call at a time per target (calls
// for different targets may run concurrently); it should not block for
// long, since that target's probes wait for it. A probe that completes
// concurrently with Remove may still deliver one report after Remove
// returns.
func New(spec Spec, report func(Result), opts ...Option) *Checker {
	c := &Checker{
		spec:    spec.WithDefaults(),
		report:  report,
		log:     slog.New(slog.DiscardHandler),
		targets: make(map[string]*target),
	}
	if c.report == nil {
		c.report = func(Result) {}
	}
	for _, o := range opts {
		o(c)
	}
	c.prober = NewProber(c.spec, c.client)
	return c
}

// Spec returns the checker's spec with defaults applied.
func (c *Checker) Spec() Spec { return c.spec }

// Add starts checking addr (host:port). While Run runs the first probe is
// sent at once. It returns ErrExists if addr is already checked.
func (c *Checker) Add(addr string, o TargetOpts) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.targets[addr]; ok {
		return fmt.Errorf("add health target %s: %w", addr, ErrExists)
	}
	t := &target{addr: addr, opts: o, added: time.Now()}
	if o.InitiallyHealthy {
		t.state = Healthy
	}
	c.targets[addr] = t
	if c.ctx != nil {
		c.startLocked(t)
	}
	return nil
}

// Remove stops checking addr; its probe in flight, if any, is canceled
// and not counted. It returns ErrNotFound if addr is not checked.
func (c *Checker) Remove(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.targets[addr]
	if t == nil {
		return fmt.Errorf("remove health target %s: %w", addr, ErrNotFound)
	}
	delete(c.targets, addr)
	t.removed = true
	if t.cancel != nil {
		t.cancel()
	}
	return nil
}

// Status returns the view of addr, or false if it is not checked.
func (c *Checker) Status(addr string) (TargetStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.targets[addr]
	if t == nil {
		return TargetStatus{}, false
	}
	return TargetStatus{
		Addr: t.addr, State: t.state, Reason: t.reason,
		Passes: t.passes, Failures: t.failures, Checks: t.checks,
		LastCheck: t.lastCheck, InGrace: time.Since(t.added) < t.opts.Grace,
	}, true
}

// Statuses returns the view of every checked target, sorted by address.
func (c *Checker) Statuses() []TargetStatus {
	c.mu.Lock()
	addrs := make([]string, 0, len(c.targets))
	for a := range c.targets {
		addrs = append(addrs, a)
	}
	c.mu.Unlock()
	slices.Sort(addrs)
	out := make([]TargetStatus, 0, len(addrs))
	for _, a := range addrs {
		if st, ok := c.Status(a); ok {
			out = append(out, st)
		}
	}
	return out
}

// Run probes the targets until ctx is canceled, then waits for every probe
// goroutine to end and returns nil. It may be called once; a second call
// returns ErrRunning.
func (c *Checker) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		return ErrRunning
	}
	c.ran = true
	c.ctx = ctx
	for _, t := range c.targets {
		c.startLocked(t)
	}
	c.mu.Unlock()

	<-ctx.Done()
	c.mu.Lock()
	c.ctx = nil // Add no longer starts loops
	c.mu.Unlock()
	c.wg.Wait()
	if c.client != nil {
		c.client.CloseIdleConnections()
	}
	return nil
}

// startLocked starts t's probe loop under Run's context.
func (c *Checker) startLocked(t *target) {
	ctx, cancel := context.WithCancel(c.ctx)
	t.cancel = cancel
	c.wg.Go(func() {
		defer cancel()
		c.loop(ctx, t)
	})
}

// loop probes t every jittered interval until ctx ends.
func (c *Checker) loop(ctx context.Context, t *target) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		ok, reason := c.prober.Probe(ctx, t.addr)
		if ctx.Err() != nil {
			return // removed or stopping: the probe proves nothing
		}
		if res, changed := c.record(t, ok, reason, time.Now()); changed {
			c.report(res)
		}
		if ok && c.onPass != nil {
			c.onPass(t.addr, start)
		}
		timer.Reset(time.Until(start.Add(c.interval())))
	}
}

// interval returns the spec interval scaled by the jitter factor.
func (c *Checker) interval() time.Duration {
	d := c.spec.Interval
	if j := c.spec.Jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
	}
	return d
}

// record applies one probe outcome to t and reports whether its state
// changed, with the Result to report.
func (c *Checker) record(t *target, ok bool, reason string, now time.Time) (Result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.removed {
		return Result{}, false
	}
	t.checks++
	t.lastCheck, t.reason = now, reason
	if ok {
		t.passes++
		t.failures = 0
	} else {
		t.passes = 0
		if now.Sub(t.added) >= t.opts.Grace {
			t.failures++
		}
	}
	next := t.state
	switch {
	case ok && t.passes >= c.spec.HealthyThreshold:
		next = Healthy
	case !ok && t.failures >= c.spec.UnhealthyThreshold:
		next = Unhealthy
	}
	if next == t.state {
		return Result{}, false
	}
	t.state = next
	c.log.Info("target health", "target", t.addr, "state", next.String(), "reason", reason)
	return Result{Addr: t.addr, Healthy: next == Healthy, Reason: reason}, true
}
