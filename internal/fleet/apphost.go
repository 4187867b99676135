package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/placement"
)

// Host returns the fleet as the controller of app sees it: a
// controller.Host that places the app's instances on the fleet's ready
// hosts and delivers the app's exits only. It is also a
// controller.Evacuator: the instances of the app on a draining host are
// asked to move (drain.go). Every call with the same app returns a Host
// over the same channels; one controller per app reads them.
func (f *Fleet) Host(app string) controller.Host {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.views[app]
	if v == nil {
		v = &view{app: app, exits: newOutbox[controller.Exit](64), evacuations: newOutbox[controller.Evacuation](8),
			ended: make(chan string, 64)}
		f.views[app] = v
		f.goLocked(v.forward)
		f.appEvacuationsLocked(v) // drain.go
	}
	return &appHost{f: f, v: v}
}

// appHost implements controller.Host for one app.
type appHost struct {
	f *Fleet
	v *view
}

// errHostLost is the cause of a call to an agent cancelled because its
// host was declared lost.
var errHostLost = errors.New("host declared lost")

// Name implements controller.Host.
func (a *appHost) Name() string { return "fleet" }

// Exits implements controller.Host: the ends of the app's instances, each
// once, in the order the fleet learnt them. The channel is never closed.
func (a *appHost) Exits() <-chan controller.Exit { return a.v.exits.ch }

// Ended implements controller.Ender: the app's instances whose agents saw
// their process end (a container's, before its engine reported the exit),
// each followed by its exit on Exits. The channel is never closed.
func (a *appHost) Ended() <-chan string { return a.v.ended }

// Evacuations implements controller.Evacuator: for each draining host, the
// app's instances there, when it starts draining and whenever the fleet
// learns them anew (a restart of the server); an empty one when the host
// is undrained. The channel is never closed.
func (a *appHost) Evacuations() <-chan controller.Evacuation { return a.v.evacuations.ch }

// NoCapacityError is Start's error when no host can take the instance: it
// wraps controller.ErrNoCapacity and the placement's reasons, and reads
// "no capacity: no host can take an instance of web (...): a: draining; ...".
type NoCapacityError struct {
	Err *placement.NoCapacityError
}

func (e *NoCapacityError) Error() string {
	return "no capacity: " + strings.TrimPrefix(e.Err.Error(), "no host can take ")
}

// Unwrap returns controller.ErrNoCapacity and the placement's error.
func (e *NoCapacityError) Unwrap() []error { return []error{controller.ErrNoCapacity, e.Err} }

// Start implements controller.Host: it chooses a host with placement.Choose
// among the ready ones, counting every app's instances and their declared
// CPU and memory, and asks its agent to run the instance under the current
// term. A host that does not answer, is declared lost during the call, or
// cannot run the instance (a container instance on a host with no Docker
// engine: agentclient.ErrUnsupported) is left out and another chosen; when
// none is left the error is a *NoCapacityError naming each host's reason.
// Any other answer of the agent's refusing the start is returned as it is.
func (a *appHost) Start(ctx context.Context, spec controller.LaunchSpec) (controller.Running, error) {
	f := a.f
	tried := map[string]string{}
	docker := spec.Runtime == "docker"
	for {
		f.mu.Lock()
		if docker {
			f.leaveOutNoContainersLocked(tried)
		}
		name, err := placement.Choose(f.placementHostsLocked(tried), nil,
			placement.Request{Group: a.v.app, CPU: spec.CPU, Memory: spec.Memory})
		if err != nil {
			var nc *placement.NoCapacityError
			if errors.As(err, &nc) {
				f.unplaced[spec.ID] = Unplaced{App: a.v.app, Instance: spec.ID, CPU: spec.CPU, Memory: spec.Memory, At: f.o.Now()}
				f.mu.Unlock()
				return controller.Running{}, &NoCapacityError{Err: nc}
			}
			f.mu.Unlock()
			return controller.Running{}, fmt.Errorf("place %s: %w", spec.ID, err)
		}
		h := f.hosts[name]
		delete(f.unplaced, spec.ID)
		if h.instances[spec.ID] != nil {
			f.mu.Unlock()
			return controller.Running{}, fmt.Errorf("start %s: already placed on host %s", spec.ID, name)
		}
		p := &placed{app: a.v.app, release: spec.Release, gen: h.rec.Generation, cpu: spec.CPU, mem: spec.Memory, starting: true}
		f.placeLocked(h, spec.ID, p)
		c, genCtx, term := h.client, h.genCtx, f.term()
		f.mu.Unlock()

		cctx, stop := callCtx(ctx, genCtx)
		info, err := c.Start(cctx, term, wireSpec(spec, p.gen))
		stop()
		f.mu.Lock()
		ours := h.instances[spec.ID] == p
		if err == nil && ours {
			p.starting, p.addr, p.seen = false, info.Addr, h.listSeq
			if p.ended {
				f.unplaceLocked(h, spec.ID)
			}
			zone := h.rec.Zone
			f.mu.Unlock()
			return controller.Running{Addr: info.Addr, PID: info.PID, Started: info.Started, Host: name, Zone: zone}, nil
		}
		if ours {
			f.unplaceLocked(h, spec.ID)
		}
		var se *agentclient.StatusError
		answered := err != nil && errors.As(err, &se)
		if !answered {
			// The agent may run it without our knowing: stop it when seen.
			h.stale[spec.ID] = a.v.app
		}
		f.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			f.stopQuietly(h, c, term, spec.ID)
			return controller.Running{}, fmt.Errorf("start %s on host %s: %w", spec.ID, name, ctx.Err())
		case !ours || genCtx.Err() != nil:
			tried[name] = "lost while starting " + spec.ID
		case answered && errors.Is(err, agentclient.ErrUnsupported):
			tried[name] = se.Message
			f.noContainers(h, se.Message)
		case answered:
			return controller.Running{}, fmt.Errorf("start %s on host %s: %w", spec.ID, name, err)
		default:
			f.stopQuietly(h, c, term, spec.ID)
			tried[name] = "did not answer: " + err.Error()
		}
		f.log.Warn("start failed; placing again", "instance", spec.ID, "host", name, "reason", tried[name])
	}
}

// leaveOutNoContainersLocked marks in tried the hosts whose agent, in its
// current run, refused a container instance.
func (f *Fleet) leaveOutNoContainersLocked(tried map[string]string) {
	for name, h := range f.hosts {
		if h.noContainers != "" && h.noContainersEpoch == h.rec.Epoch && tried[name] == "" {
			tried[name] = h.noContainers
		}
	}
}

// noContainers records that h's agent refused a container instance for
// reason, with an event the first time in the agent's run.
func (f *Fleet) noContainers(h *host, reason string) {
	f.mu.Lock()
	fresh := h.noContainers == "" || h.noContainersEpoch != h.rec.Epoch
	h.noContainers, h.noContainersEpoch = reason, h.rec.Epoch
	name := h.rec.Name
	f.mu.Unlock()
	if fresh {
		f.event(api.Event{Reason: fmt.Sprintf("host %s runs no containers (%s): container instances go to other hosts until its agent reaches an engine", name, reason)}, slog.LevelWarn)
	}
}

// stopQuietly stops an instance on h whose start went unanswered, in case
// it runs; failing that, it stays stale and h is listed again at once: the
// sweep stops it, and tries again until it can (follow). Before, it was
// stopped only at h's next list, which a host that stays up never has: the
// instance ran on, unknown to its app, and a server alone left it running
// at its shutdown (TestSmallFleet under load; TestUnansweredStartStopped).
// A stop that overtakes its start at the agent is answered as done, and
// the agent then refuses the start (agent: stoppedIDs).
func (f *Fleet) stopQuietly(h *host, c *agentclient.Client, term uint64, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), f.o.LostAfter)
	defer cancel()
	err := c.Stop(ctx, term, id)
	if err == nil || errors.Is(err, agentclient.ErrNotFound) {
		return
	}
	f.mu.Lock()
	name := h.rec.Name
	f.relistLocked(h)
	f.mu.Unlock()
	f.log.Warn("stop an instance whose start failed; listing its host again", "instance", id, "host", name, "error", err)
}

// relistLocked has h's follower list h again at once (if it follows h
// now): its sweep stops the instances marked stale there, and, when a
// stop fails, the follower lists and sweeps again every HeartbeatEvery
// until it can.
func (f *Fleet) relistLocked(h *host) {
	if h.followCancel != nil {
		h.followCancel()
	}
}

// callCtx is ctx, also cancelled when genCtx (the host's generation) ends.
func callCtx(ctx, genCtx context.Context) (context.Context, func()) {
	cctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(genCtx, func() { cancel(errHostLost) })
	return cctx, func() {
		stop()
		cancel(nil)
	}
}

// wireSpec is spec as the agent takes it, labelled with the host's
// generation and the declared resources.
func wireSpec(spec controller.LaunchSpec, gen uint64) api.LaunchSpec {
	labels := map[string]string{LabelGeneration: strconv.FormatUint(gen, 10)}
	if spec.CPU > 0 {
		labels[LabelCPU] = strconv.FormatFloat(spec.CPU, 'g', -1, 64)
	}
	if spec.Memory > 0 {
		labels[LabelMemory] = strconv.FormatInt(spec.Memory, 10)
	}
	w := api.LaunchSpec{ID: spec.ID, App: spec.App, Release: spec.Release, Digest: spec.Digest, Command: spec.Command,
		Env: spec.Env, Secrets: spec.Secrets, StopTimeoutMS: spec.StopTimeout.Milliseconds(), Labels: labels}
	if spec.Runtime == "docker" { // any other runs a process, the agent's default
		w.Runtime, w.Port = spec.Runtime, spec.Port
	}
	if spec.StopSignal != 0 {
		w.StopSignal = unix.SignalName(spec.StopSignal)
	}
	return w
}

// findLocked returns the host an instance is placed on.
func (f *Fleet) findLocked(id string) (*host, *placed) {
	h := f.where[id]
	if h == nil {
		return nil, nil
	}
	return h, h.instances[id]
}

// Stop implements controller.Host: the instance's agent stops it. An
// instance the fleet does not know, or whose host was declared lost (it
// was reported ended; the host stops it when it answers again), needs
// nothing. When the stop fails otherwise (no answer in time: a loaded
// host), the error is returned and the instance is marked stale and its
// host listed again, so that the fleet stops it even though its app, told
// it failed, has forgotten it (controller.stopThenEnd).
func (a *appHost) Stop(ctx context.Context, id string) error {
	f := a.f
	f.mu.Lock()
	h, p := f.findLocked(id)
	if h == nil || p.app != a.v.app {
		f.mu.Unlock()
		return nil
	}
	c, genCtx, term := h.client, h.genCtx, f.term()
	f.mu.Unlock()
	cctx, stop := callCtx(ctx, genCtx)
	err := c.Stop(cctx, term, id)
	stop()
	switch {
	case err == nil, errors.Is(err, agentclient.ErrNotFound):
		return nil
	case genCtx.Err() != nil && ctx.Err() == nil:
		return nil
	case errors.Is(err, agentclient.ErrStaleTerm):
		return err // a newer leader's: not this server's to stop
	}
	f.mu.Lock()
	if h.instances[id] == p {
		h.stale[id] = p.app
		f.relistLocked(h)
	}
	f.mu.Unlock()
	return err
}

// Logs implements controller.Host. The output of an instance that has
// ended is the last lines its agent reported with its exit.
func (a *appHost) Logs(ctx context.Context, id string, tail int, follow bool, w io.Writer) error {
	f := a.f
	f.mu.Lock()
	h, p := f.findLocked(id)
	ended, wasEnded := f.ended.get(id)
	var c *agentclient.Client
	if h != nil && p.app == a.v.app {
		c = h.client
	}
	f.mu.Unlock()
	if c == nil {
		if wasEnded {
			_, err := io.WriteString(w, lastLines(ended.logTail, tail))
			return err
		}
		return fmt.Errorf("logs %s: %w", id, controller.ErrUnknownInstance)
	}
	err := c.Logs(ctx, id, tail, follow, w)
	if errors.Is(err, agentclient.ErrNotFound) {
		return fmt.Errorf("logs %s: %w", id, controller.ErrUnknownInstance)
	}
	return err
}

// lastLines returns the last n lines of s (all when n <= 0).
func lastLines(s string, n int) string {
	if n <= 0 || s == "" {
		return s
	}
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, "")
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out
}

// statsTimeout bounds a Stats call, which takes no ctx.
const statsTimeout = 5 * time.Second

// Stats implements controller.Host.
func (a *appHost) Stats(id string) (controller.Stats, error) {
	f := a.f
	f.mu.Lock()
	h, p := f.findLocked(id)
	if h == nil || p.app != a.v.app || p.starting {
		f.mu.Unlock()
		return controller.Stats{}, fmt.Errorf("stats %s: %w", id, controller.ErrUnknownInstance)
	}
	c, genCtx := h.client, h.genCtx
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	cctx, stop := callCtx(ctx, genCtx)
	defer stop()
	s, err := c.Stats(cctx, id)
	if err != nil {
		return controller.Stats{}, err
	}
	return controller.Stats{CPUSeconds: s.CPUSeconds, RSSBytes: s.RSSBytes}, nil
}

// view holds what the fleet tells one app's controller: its exits and its
// evacuations, each through an outbox, and the hints of instances seen to
// end before their exits (dropped when the controller does not keep up).
type view struct {
	app         string
	exits       *outbox[controller.Exit]
	evacuations *outbox[controller.Evacuation]
	ended       chan string
}

func (v *view) push(e controller.Exit) { v.exits.push(e) }

// forward runs both outboxes until ctx ends.
func (v *view) forward(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { v.evacuations.forward(ctx) })
	v.exits.forward(ctx)
	wg.Wait()
}

// outbox holds messages for a controller until it reads them: an unbounded
// queue (a burst of a lost host's exits never blocks the fleet) in front
// of the channel it reads.
type outbox[T any] struct {
	ch     chan T
	signal chan struct{}

	mu    sync.Mutex
	queue []T
}

func newOutbox[T any](buffer int) *outbox[T] {
	return &outbox[T]{ch: make(chan T, buffer), signal: make(chan struct{}, 1)}
}

func (o *outbox[T]) push(m T) {
	o.mu.Lock()
	o.queue = append(o.queue, m)
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// forward moves the queue into the channel until ctx ends; messages left
// in the queue are delivered by the next Run.
func (o *outbox[T]) forward(ctx context.Context) {
	for {
		o.mu.Lock()
		var m T
		ok := len(o.queue) > 0
		if ok {
			m = o.queue[0]
		}
		o.mu.Unlock()
		if !ok {
			select {
			case <-o.signal:
				continue
			case <-ctx.Done():
				return
			}
		}
		select {
		case o.ch <- m:
			var zero T
			o.mu.Lock()
			o.queue[0] = zero
			o.queue = o.queue[1:]
			o.mu.Unlock()
		case <-ctx.Done():
			return
		}
	}
}

var _ controller.Ender = (*appHost)(nil)
