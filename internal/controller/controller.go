// Package controller keeps one app's group of instances in the desired
// state. It composes the release store (build once), a Host (runs
// instances), the balancer's pool (routes traffic to instances in service),
// the durable store (desired state, releases, events) and the pure
// reconciler (what to do next).
//
// Concurrency: Controller's methods are safe for concurrent use. One mutex
// guards the instance table and the desired state; no I/O happens under
// it. Work that blocks (starting, probing, draining, stopping) runs in
// goroutines owned by Run, which waits for all of them before it returns.
//
// Shutdown order when Run's context ends: stop reconciling, take every
// instance out of the pool (drained, bounded by the drain timeout), stop
// every instance, flush events. The caller closes the store afterwards.
//
// With Options.LeaveRunning (shoal server: static stability) Run instead
// stops reconciling and returns with every instance still running and
// still in the pool: only instances already being stopped (a scale-in or
// a replacement under way) finish stopping, and a launch not yet running
// is abandoned. A controller started later on the same store adopts the
// instances through a Host that is an Adopter (adopt.go).
package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/reconcile"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/store"
)

// Errors returned by the controller; the admin API maps them to statuses.
var (
	ErrOutOfRange      = errors.New("desired count out of range")
	ErrUnknownInstance = errors.New("unknown instance")
	ErrNotRunning      = errors.New("controller is not running")
)

// Options configures a Controller.
type Options struct {
	// Config is the app's validated configuration. Required.
	Config *config.App
	// Store holds desired state, releases and events. Required. The
	// controller never closes it.
	Store *store.Store
	// Writer receives the controller's writes to the desired state; nil
	// writes Store at once (shoal up, a single server). A replicated
	// server gives its cluster's writer (issue 14), and Store is then its
	// replica, read after each write returned.
	Writer store.Writer
	// Artifacts builds and stores artifacts. Required.
	Artifacts *release.Store
	// Host runs the instances. Required.
	Host Host
	// Pool is the balancer pool of the app's instances. Required. The
	// controller adds instances in service and drains and removes the
	// others; it is the only writer of the pool's membership.
	Pool *pool.Pool
	// AwaitDrain, when set, is called after the pool has drained an
	// instance's address and before the instance is stopped, with a
	// context that ends at the drain timeout: it returns once the other
	// balancers that send to the app's instances (`shoal server`'s
	// balancer nodes) no longer send new requests to addr and have
	// finished those they had, or with an error when ctx ends first (the
	// stop goes ahead). Nil: the pool is the only balancer.
	AwaitDrain func(ctx context.Context, addr string) error
	// BuildLog receives the build command's output; nil discards it.
	BuildLog io.Writer
	// Console receives, for people, a short report of a crash whose
	// reason is new for its release: the exit and the last lines of the
	// instance's output, secrets redacted (shoal up: its stderr). A crash
	// loop writes it once, not once per crash. Nil discards.
	Console io.Writer
	// LookupEnv resolves run.env_from_host; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Logger receives state changes (Info) and trouble (Warn); nil
	// discards.
	Logger *slog.Logger
	// Now replaces time.Now; nil means time.Now.
	Now func() time.Time
	// Uploads, when set, is the upload side of Artifacts shared with
	// other apps (`shoal server` keeps one artifact store for every app);
	// it must be NewUploads of Artifacts. Nil: the controller makes its
	// own, whose events go to the app's log.
	Uploads *Uploads
	// KeepArtifacts, when set, names artifacts that pruning must keep
	// besides this app's kept releases and the recent uploads: when apps
	// share one artifact store, every other app's releases. It is called
	// without the controller's lock.
	KeepArtifacts func() []string
	// Latency returns the pool's cumulative latency histogram for the
	// autoscaler's latency policies (see autoscale.Histogram; the
	// balancer's LatencyHistogram). Nil means no latency data.
	Latency func() (bounds []float64, counts []uint64)
	// LeaveRunning, when true, makes Run return at the end of its context
	// without draining or stopping the instances: they keep running on
	// their hosts and stay in the pool, which is then the caller's to drop
	// or keep. Instances already being stopped finish stopping; a launch
	// whose process was not yet running is abandoned (the host stops it).
	// A stored rollout stays stored and resumes at the next start. False
	// (shoal up) drains and stops every instance.
	LeaveRunning bool
}

// Controller runs one app's group on its hosts. Create it with New, then
// call Run once.
type Controller struct {
	o      Options
	cfg    *config.App
	log    *slog.Logger
	now    func() time.Time
	env    config.Env // resolved environment of the current release
	events *eventLog
	prober *health.Prober // one check of cfg.Health; the launch and watch loops schedule them
	passes *passMetrics   // reconcile pass durations (passes.go)

	kick  chan struct{} // wakes the reconcile loop; buffered 1
	ready chan struct{} // closed when desired instances first serve
	// started is closed once Run has prepared the release and adopted
	// what runs (or has failed to): Deploy and Rollback wait for it, so
	// that none starts from the release and group of before the start.
	started   chan struct{}
	startOnce sync.Once
	running   atomic.Bool
	stopRun   context.CancelCauseFunc // ends Run's loop with a *fatalError (fatal.go)

	// groupWrite is held (a semaphore: send to take, receive to give
	// back) by each write of the group's desired count, from its store
	// write to c.group's update: two writes that raced would otherwise
	// reach the store, in a cluster the Raft log, in one order and
	// c.group, which the reconciler and GET /v1/status read, in the other
	// (a `shoal scale 5` and a `shoal scale 2` both acknowledged, the log
	// ending at 2, the controller running 5).
	groupWrite chan struct{}

	mu        sync.Mutex
	group     api.Group
	current   api.Release
	instances map[string]*instance
	backoff   map[int]reconcile.Backoff
	blocked   string    // backoff message of the last decision
	blockedAt time.Time // failure whose backoff was last reported
	readyDone bool
	seq       int // instance id counter
	rates     map[string]rate
	dep       deployState // rollouts and the deploy lock (deploy*.go)
	grow      int         // instances of a scale-out not yet launched (autoscale.go)
	as        autoscaler  // auto scaling (autoscale*.go); own lock

	// crashes is the last crash of each release, crashShown the reason
	// last written to Options.Console for it (crash.go); nil until the
	// first crash.
	crashes    map[int]api.Crash
	crashShown map[int]string

	up *Uploads // the artifacts' upload side (deploy_artifacts.go)

	notes  []string     // how the app folder differs from the resumed release (release.go)
	served map[int]bool // releases recorded as served by this run (launch.go)
	// marking holds, per release, the end of its served record being
	// written (launch.go: markServed).
	marking map[int]chan struct{}
	noStart map[int]bool // releases that could not start in this run (launch.go)

	moves map[string]*move // instances to move off their machine, by id (evacuate.go)
}

// New validates o and returns a Controller. It does no I/O; Run prepares
// the release and starts instances.
func New(o Options) (*Controller, error) {
	switch {
	case o.Config == nil:
		return nil, errors.New("controller: Config is required")
	case o.Store == nil:
		return nil, errors.New("controller: Store is required")
	case o.Artifacts == nil:
		return nil, errors.New("controller: Artifacts is required")
	case o.Host == nil:
		return nil, errors.New("controller: Host is required")
	case o.Pool == nil:
		return nil, errors.New("controller: Pool is required")
	}
	if o.Writer == nil {
		o.Writer = o.Store
	}
	c := &Controller{
		o:          o,
		cfg:        o.Config,
		log:        o.Logger,
		now:        o.Now,
		kick:       make(chan struct{}, 1),
		groupWrite: make(chan struct{}, 1),
		ready:      make(chan struct{}),
		started:    make(chan struct{}),
		instances:  map[string]*instance{},
		backoff:    map[int]reconcile.Backoff{},
		rates:      map[string]rate{},
		served:     map[int]bool{},
		marking:    map[int]chan struct{}{},
		noStart:    map[int]bool{},
		prober:     health.NewProber(o.Config.Health.Spec(), nil),
		passes:     newPassMetrics(),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("app", o.Config.Name)
	if c.now == nil {
		c.now = time.Now
	}
	c.events = newEventLog(c.storeEvents, c.log, c.now).withStateWrites()
	c.up = o.Uploads
	if c.up == nil {
		c.up = NewUploads(o.Artifacts, c.now, c.events.add)
	}
	return c, nil
}

// Ready is closed once the desired number of instances first serve at the
// same time after Run started (immediately when the desired count is 0, or
// when there is no release yet: see prepare).
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// markStarted closes started, once.
func (c *Controller) markStarted() { c.startOnce.Do(func() { close(c.started) }) }

// awaitStarted waits until Run has started (see started) or ctx ends.
func (c *Controller) awaitStarted(ctx context.Context) error {
	select {
	case <-c.started:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the controller to start: %w", context.Cause(ctx))
	}
}

// Release returns the release the group runs, valid after Ready.
func (c *Controller) Release() api.Release {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

// Run prepares the release (it resumes the stored active one; only a
// first start builds and makes one), then keeps the group in its desired
// state until ctx ends, then drains and stops every instance (unless
// Options.LeaveRunning). It returns nil after a clean shutdown, or the
// error that made it stop. Run must be called once.
func (c *Controller) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("controller: Run called twice")
	}
	defer c.markStarted() // also when the start fails
	evDone := make(chan struct{})
	go func() { // event writer; ends after the final flush below
		defer close(evDone)
		c.events.run()
	}()
	defer func() {
		c.events.close()
		<-evDone
	}()
	c.removeHookLeftovers()                        // deploy_hooks.go
	if err := c.prepareOrResume(ctx); err != nil { // deploy_persist.go
		c.events.add(api.Event{Type: "shoal", Reason: "cannot start: " + c.env.Redact(err.Error())})
		return err
	}
	if err := c.initScaling(); err != nil { // autoscale.go
		return err
	}

	var workers sync.WaitGroup
	loopCtx, stopLoop := context.WithCancelCause(ctx)
	c.stopRun = stopLoop
	// Before the exit watcher starts, so that an adopted instance is in
	// the table when its exit is read (adopt.go).
	keep, drop := c.adopt(loopCtx)
	exitsDone := make(chan struct{})
	// The exit watcher outlives the loop: shutdown needs exits reported.
	exitsCtx, stopExits := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(exitsDone)
		c.watchExits(exitsCtx)
	}()
	c.startAdopted(&workers, keep, drop)
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		c.sampleRates(loopCtx)
	}()
	autoscaleDone := make(chan struct{})
	go func() {
		defer close(autoscaleDone)
		c.runAutoscale(loopCtx) // autoscale.go
	}()
	evacuationsDone := make(chan struct{})
	go func() {
		defer close(evacuationsDone)
		if ev, ok := c.o.Host.(Evacuator); ok {
			c.watchEvacuations(loopCtx, ev) // evacuate.go
		}
	}()
	c.markStarted()
	c.loop(loopCtx, &workers)
	c.stopRollout() // deploy_step.go
	stopLoop(nil)
	<-samplerDone
	<-autoscaleDone
	<-evacuationsDone

	// Shutdown: workers end on loopCtx (probes and launches abort); then
	// every remaining instance is drained and stopped.
	workers.Wait()
	if c.o.LeaveRunning {
		c.leaveRunning() // adopt.go
	} else {
		c.shutdown()
	}
	stopExits()
	<-exitsDone
	return fatalCause(loopCtx)
}

// loop runs the reconciler on every kick and at backoff deadlines until
// ctx ends.
func (c *Controller) loop(ctx context.Context, workers *sync.WaitGroup) {
	c.poke()
	var timer *time.Timer
	var timerC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-c.kick:
		case <-timerC:
			timerC = nil
		}
		start := time.Now()
		retryAt := c.reconcile(ctx, workers)
		c.passes.observe(start)
		if timer != nil {
			timer.Stop()
			timerC = nil
		}
		if !retryAt.IsZero() {
			timer = time.NewTimer(max(retryAt.Sub(c.now()), 0))
			timerC = timer.C
		}
	}
}

// poke asks the loop to reconcile soon; it never blocks.
func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// reconcile runs one decision and starts its actions. It returns when to
// run again without a kick (zero: only on a kick).
func (c *Controller) reconcile(ctx context.Context, workers *sync.WaitGroup) time.Time {
	c.mu.Lock()
	hold := c.dep.active != nil && c.adoptingLocked()
	c.mu.Unlock()
	if hold {
		return time.Time{} // the adopted instance's verdict wakes the loop (adopt.go)
	}
	if retryAt, rolling := c.stepRollout(ctx, workers); rolling {
		return retryAt // a rollout holds the group (deploy_step.go)
	}
	c.mu.Lock()
	now := c.now()
	obs := make([]reconcile.Instance, 0, len(c.instances))
	c.pruneMovesLocked(now) // evacuate.go
	for _, in := range c.instances {
		obs = append(obs, c.observedLocked(in))
	}
	desired := reconcile.Desired{Release: c.current.Version, Count: c.desiredLocked(), MaxLaunching: c.cfg.Group.MaxReplacing, Grow: c.grow}
	plan := reconcile.Decide(now, desired, obs, c.backoff[c.current.Version])
	c.consumeGrowthLocked(plan) // autoscale.go
	// One event per backoff step, not one per evaluation during it.
	if b := c.backoff[c.current.Version]; plan.Blocked != "" && b.LastFailure != c.blockedAt {
		c.blockedAt = b.LastFailure
		reason := plan.Blocked + c.crashNoteLocked(c.current.Version) // crash.go
		c.events.add(api.Event{Type: "backoff", Release: c.current.Version, Reason: reason})
		c.log.Warn("crash loop backoff", "release", c.current.Version, "reason", reason)
	}
	c.blocked = plan.Blocked
	type job struct {
		act   reconcile.Action
		in    *instance
		moved bool // a retire that ends a move (evacuate.go)
	}
	var jobs []job
	for _, a := range plan.Actions {
		switch a.Kind {
		case reconcile.Launch:
			in := c.newInstanceLocked(ctx, a)
			c.launchedLocked(a, in)
			jobs = append(jobs, job{act: a, in: in})
		case reconcile.Retire, reconcile.Stop:
			in := c.instances[a.Instance]
			if in == nil {
				continue
			}
			c.setStateLocked(in, api.Draining, a.Reason)
			// Ends the monitor, or makes a launch in progress stop what
			// it started.
			in.cancel()
			if a.Kind == reconcile.Retire {
				jobs = append(jobs, job{act: a, in: in, moved: c.movedLocked(in.id)})
			}
		}
	}
	c.checkReadyLocked()
	c.mu.Unlock()

	for _, j := range jobs {
		workers.Add(1)
		go func() {
			defer workers.Done()
			switch {
			case j.act.Kind == reconcile.Launch:
				c.launch(ctx, j.in)
			case j.moved:
				c.retireMoved(j.in, j.act.Reason)
			default:
				c.retire(j.in, j.act.Reason)
			}
		}()
	}
	return plan.RetryAt
}

// checkReadyLocked closes ready the first time the desired count serves.
func (c *Controller) checkReadyLocked() {
	if c.readyDone {
		return
	}
	n := 0
	for _, in := range c.instances {
		if in.state == api.InService {
			n++
		}
	}
	if n >= c.desiredLocked() {
		c.readyDone = true
		close(c.ready)
	}
}

// desiredLocked is the count of instances to run: the group's desired
// count, or 0 while there is no release (an app of `shoal server` before
// its first deploy, or whose first rollout went back).
func (c *Controller) desiredLocked() int {
	if c.current.Version == 0 {
		return 0
	}
	return c.group.Desired
}

// Scale sets the desired instance count, which must lie within the
// group's [min, max]. The change is stored before it takes effect, so it
// survives a restart; concurrent scales (and the autoscaler's changes)
// take effect in the order they were stored.
func (c *Controller) Scale(ctx context.Context, n int) error {
	if err := c.takeGroupWrite(ctx); err != nil {
		return fmt.Errorf("scale: nothing changed: %w", err)
	}
	defer c.giveGroupWrite()
	c.mu.Lock()
	g, rel := c.group, c.current.Version
	c.mu.Unlock()
	if n < g.Min || n > g.Max {
		return fmt.Errorf("scale to %d: must be between %d and %d: %w", n, g.Min, g.Max, ErrOutOfRange)
	}
	old := g.Desired
	// An operator's action is recorded before it is made, and refused when
	// its record cannot be written (events.go).
	if err := c.events.record(api.Event{Type: "scale", Release: rel,
		Reason: fmt.Sprintf("desired %d -> %d (shoal scale)", old, n)}); err != nil {
		return fmt.Errorf("scale: nothing changed: %w", err)
	}
	stored, err := c.o.Writer.UpdateGroup(c.cfg.Name, func(g *api.Group) error {
		if n < g.Min || n > g.Max {
			return fmt.Errorf("scale to %d: must be between %d and %d: %w", n, g.Min, g.Max, ErrOutOfRange)
		}
		g.Desired = n
		return nil
	})
	if err != nil {
		c.events.add(api.Event{Type: "scale", Release: rel, Reason: fmt.Sprintf("scale to %d failed: %v", n, err)})
		return fmt.Errorf("scale: %w", err)
	}
	c.mu.Lock()
	c.group.Desired = stored.Desired
	c.noteDesiredLocked(old, n) // autoscale.go
	c.noteManualLocked(n)
	c.mu.Unlock()
	c.log.Info("scaled", "from", old, "to", n)
	c.poke()
	return nil
}

// takeGroupWrite takes groupWrite, waiting at most until ctx ends.
func (c *Controller) takeGroupWrite(ctx context.Context) error {
	select {
	case c.groupWrite <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (c *Controller) giveGroupWrite() { <-c.groupWrite }

// Logs writes the output of instance id through its host (see Host.Logs).
func (c *Controller) Logs(ctx context.Context, id string, tail int, follow bool, w io.Writer) error {
	if id == "" {
		return fmt.Errorf("logs: no instance given: %w", ErrUnknownInstance)
	}
	c.mu.Lock()
	env := c.env
	c.mu.Unlock()
	rw := &redactWriter{w: w, env: env}
	err := c.o.Host.Logs(ctx, id, tail, follow, rw)
	if ferr := rw.Flush(); err == nil {
		err = ferr
	}
	return err
}
