package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/placement"
)

// reach is what the heartbeat knows of a host.
type reach int

const (
	reachUnknown reach = iota // not answered yet in this run
	reachUp                   // answered within LostAfter
	reachLost                 // declared lost; not answered since
)

// host is the registry's entry of one host. Its fields are guarded by
// Fleet.mu.
type host struct {
	rec    api.Host
	client *agentclient.Client
	reach  reach
	// synced: listed and swept since it last became reachable; only a
	// synced host takes instances.
	synced  bool
	wasLost bool // lost since it was last synced: "back" once synced
	// since is when the heartbeat began, lastBeat its last answer;
	// pausedAt the fleet's pauses then (pause.go).
	since, lastBeat time.Time
	pausedAt        time.Duration
	// misses counts the heartbeats without an answer since the last.
	misses     int
	beatErr    string
	lostReason string
	// instances are placed on the host: starting, running, or ended on
	// it but not yet reported (none of those). Only placeLocked,
	// unplaceLocked and endLocked change it, which keep used and the
	// fleet's index (Fleet.where) with it.
	instances map[string]*placed
	// used sums the instances not ended, for placement and status.
	used placement.Usage
	// stale are instances reported ended (or whose start went unanswered)
	// that may still run there: id -> app. They are stopped when seen.
	stale map[string]string
	// listSeq counts the lists of the host's instances; an instance whose
	// start completed during a list may be missing from it.
	listSeq     uint64
	followEpoch string
	// wake is signalled when the host answers after not answering.
	wake chan struct{}
	// genCtx ends when the host is declared lost: calls to the agent run
	// under it, so none hangs on a lost host.
	genCtx       context.Context
	genCancel    context.CancelFunc
	followCancel context.CancelFunc
	// stopRun ends the host's heartbeat and follower (Remove); nil until
	// they start.
	stopRun context.CancelFunc
	// removed: forgotten by Remove; its record is never stored again.
	removed bool
	// noContainers is why the agent refused a container instance (it has
	// no Docker engine), as it said during its run noContainersEpoch:
	// container instances are not placed there until it runs anew or its
	// host info says it runs containers (its engine answered late).
	noContainers, noContainersEpoch string
}

// placed is one instance on a host.
type placed struct {
	app      string
	release  int
	gen      uint64
	cpu      float64
	mem      int64
	addr     string
	starting bool   // its start call has not returned
	ended    bool   // its exit was reported while it was starting
	seen     uint64 // listSeq when its start returned (or it was listed)
}

func (f *Fleet) newHost(rec api.Host) *host {
	h := &host{rec: rec, client: f.clientFor(rec), instances: map[string]*placed{}, stale: map[string]string{},
		used: placement.Usage{Groups: map[string]int{}}, wake: make(chan struct{}, 1)}
	h.genCtx, h.genCancel = context.WithCancel(context.Background())
	return h
}

// placeLocked records p as placed on h under id.
func (f *Fleet) placeLocked(h *host, id string, p *placed) {
	f.unplaceLocked(h, id)
	h.instances[id] = p
	f.where[id] = h
	if !p.ended {
		h.count(p, 1)
	}
}

// unplaceLocked forgets the instance id placed on h, if any.
func (f *Fleet) unplaceLocked(h *host, id string) {
	p := h.instances[id]
	if p == nil {
		return
	}
	delete(h.instances, id)
	if f.where[id] == h {
		delete(f.where, id)
	}
	if !p.ended {
		h.count(p, -1)
	}
}

// endLocked marks p, placed on h, ended: it no longer counts.
func (f *Fleet) endLocked(h *host, p *placed) {
	if !p.ended {
		p.ended = true
		h.count(p, -1)
	}
}

// count adds (d = 1) or removes (d = -1) p to h's sums.
func (h *host) count(p *placed, d int) {
	u := &h.used
	u.Instances += d
	if n := u.Groups[p.app] + d; n > 0 {
		u.Groups[p.app] = n
	} else {
		delete(u.Groups, p.app)
	}
	u.CPU += float64(d) * p.cpu
	u.Memory += int64(d) * p.mem
	if u.Instances == 0 {
		u.CPU, u.Memory = 0, 0 // no rounding left over
	}
}

// startHostLocked starts h's heartbeat and follower, if Run runs.
func (f *Fleet) startHostLocked(h *host) {
	if f.runCtx == nil {
		return
	}
	hctx, cancel := context.WithCancel(f.runCtx)
	h.stopRun = cancel
	f.goCtxLocked(hctx, func(ctx context.Context) { f.heartbeat(ctx, h) })
	f.goCtxLocked(hctx, func(ctx context.Context) { f.follow(ctx, h) })
}

// notifyLocked wakes whoever waits for a change of state (Settle).
func (f *Fleet) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// stateLocked is h's state for placement and status, with the reason when
// it is not ready.
func (f *Fleet) stateLocked(h *host) (api.HostState, string) {
	switch {
	case h.reach == reachLost:
		return api.HostUnreachable, h.lostReason
	case h.synced && h.rec.Draining:
		return api.HostDraining, "draining"
	case h.synced:
		return api.HostReady, ""
	case h.wasLost:
		return api.HostUnreachable, "answers again; its stale instances are being stopped"
	case h.beatErr != "":
		return api.HostJoining, "not answering: " + h.beatErr
	}
	return api.HostJoining, "joining: its instances not listed yet"
}

// missesToLose is how many consecutive heartbeats must go unanswered
// (refused, failed, or timed out) before a host is declared lost, on top
// of LostAfter without an answer: as ELB's unhealthy threshold counts
// failed checks, each given its whole timeout, one heartbeat that started
// late (the server's own goroutines starved on a loaded machine) and met
// the end of LostAfter soon after does not lose a host that answers.
const missesToLose = 2

// lostLimitLocked is how long h may go without an answer: LostAfter, and
// StartGrace more while it has not answered in this run.
func (f *Fleet) lostLimitLocked(h *host) time.Duration {
	if h.lastBeat.IsZero() {
		return f.o.LostAfter + f.o.StartGrace
	}
	return f.o.LostAfter
}

// silentLocked is how long h has not answered, last its last answer (or
// the heartbeat's start), not counting the time the fleet itself was
// paused since (pause.go): a server starved of CPU does not blame its
// hosts for its own silence.
func (f *Fleet) silentLocked(h *host, last, now time.Time) time.Duration {
	return now.Sub(last) - (f.pausedLocked() - h.pausedAt)
}

// heartbeat asks the host how it is every HeartbeatEvery until ctx ends,
// and declares it lost once it has not answered for LostAfter (StartGrace
// more before its first answer in this run: lostLimitLocked), not counting
// the time the fleet's own goroutines were paused (silentLocked), and its
// last missesToLose heartbeats went unanswered. Each heartbeat waits for
// its answer until LostAfter since the last answer, at least HeartbeatEvery:
// a host answering slowly, but within LostAfter, is not lost; a host that
// refuses is lost at the first failed heartbeat after LostAfter, one that
// hangs about HeartbeatEvery after it. Heartbeats take a connection of
// their own (agentclient.Client.Host), never one a long call holds.
func (f *Fleet) heartbeat(ctx context.Context, h *host) {
	f.mu.Lock()
	h.since = f.o.Now()
	h.pausedAt = f.pausedLocked()
	f.mu.Unlock()
	t := time.NewTicker(f.o.HeartbeatEvery)
	defer t.Stop()
	for {
		f.beat(ctx, h)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Fleet) beat(ctx context.Context, h *host) {
	f.mu.Lock()
	c := h.client
	last := h.lastBeat
	if last.IsZero() {
		last = h.since
	}
	limit := f.lostLimitLocked(h)
	silent := f.silentLocked(h, last, f.o.Now())
	f.mu.Unlock()
	wait := max(limit-silent, f.o.HeartbeatEvery)
	rctx, cancel := context.WithTimeout(ctx, wait)
	info, err := c.Host(rctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	now := f.o.Now()
	f.mu.Lock()
	if err == nil {
		h.lastBeat, h.beatErr, h.misses = now, "", 0
		h.pausedAt = f.pausedLocked()
		if h.reach != reachUp {
			h.reach = reachUp
			select {
			case h.wake <- struct{}{}:
			default:
			}
			f.notifyLocked()
		}
		if h.synced && info.Epoch != h.followEpoch && h.followCancel != nil {
			h.followCancel() // the agent restarted: list again
		}
		// An agent whose Docker engine answered late runs containers now.
		engineUp := info.Containers && h.noContainers != ""
		if engineUp {
			h.noContainers, h.noContainersEpoch = "", ""
		}
		name := h.rec.Name
		f.mu.Unlock()
		if engineUp {
			f.event(api.Event{Reason: fmt.Sprintf("host %s runs containers again: its agent reached its docker engine", name)}, slog.LevelInfo)
		}
		return
	}
	h.beatErr = err.Error()
	h.misses++
	if !h.lastBeat.IsZero() {
		last = h.lastBeat
	}
	if h.reach == reachLost || f.silentLocked(h, last, now) < f.lostLimitLocked(h) || h.misses < missesToLose {
		f.mu.Unlock()
		return
	}
	rec, out := f.loseLocked(h, now.Sub(last))
	reason := h.lostReason
	f.mu.Unlock()
	if err := f.persist(h); err != nil {
		// The fence holds in this run; a restart would forget it.
		f.log.Error("record a lost host's generation", "host", rec.Name, "generation", rec.Generation, "error", err)
	}
	f.event(api.Event{Reason: fmt.Sprintf("%s (%v); %d instances reported ended, generation now %d", reason, err, len(out), rec.Generation)}, slog.LevelWarn)
	f.deliver(out)
}

// loseLocked declares h lost after d without an answer: a new generation,
// calls to it cancelled, its instances moved to stale and their ends
// returned for delivery. The caller stores the returned record.
func (f *Fleet) loseLocked(h *host, d time.Duration) (api.Host, []pendingExit) {
	h.reach, h.synced, h.wasLost = reachLost, false, true
	h.lostReason = fmt.Sprintf("host %s unreachable for %s", h.rec.Name, d.Round(100*time.Millisecond))
	h.rec.Generation++
	h.genCancel()
	h.genCtx, h.genCancel = context.WithCancel(context.Background())
	if h.followCancel != nil {
		h.followCancel()
	}
	now := f.o.Now()
	var out []pendingExit
	for id, p := range h.instances {
		h.stale[id] = p.app
		f.unplaceLocked(h, id)
		if p.starting || p.ended {
			continue // its start call fails, or its end was reported
		}
		out = append(out, pendingExit{v: f.views[p.app], e: controller.Exit{ID: id, Code: -1, At: now, Reason: h.lostReason}})
	}
	f.notifyLocked()
	return h.rec, out
}

// follow lists the host's instances, sweeps them and follows their exits,
// again after each loss, restart of the agent or lost cursor, until ctx
// ends.
func (f *Fleet) follow(ctx context.Context, h *host) {
	for ctx.Err() == nil {
		f.mu.Lock()
		up, wake := h.reach == reachUp, h.wake
		var fctx context.Context
		var cancel context.CancelFunc
		if up {
			fctx, cancel = context.WithCancel(ctx)
			h.followCancel = cancel
		}
		f.mu.Unlock()
		if !up {
			select {
			case <-wake:
			case <-ctx.Done():
			}
			continue
		}
		err := f.syncAndFollow(fctx, h)
		lost := fctx.Err() != nil
		cancel()
		if err == nil || lost || ctx.Err() != nil {
			continue
		}
		f.log.Warn("follow host", "host", h.rec.Name, "error", err)
		t := time.NewTimer(f.o.HeartbeatEvery)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// syncAndFollow lists the host, sweeps the list and follows the exits
// from its cursor. It returns nil when the cursor is lost (list again).
func (f *Fleet) syncAndFollow(ctx context.Context, h *host) error {
	f.mu.Lock()
	h.listSeq++
	seq, c := h.listSeq, h.client
	f.mu.Unlock()
	list, err := c.List(ctx)
	if err != nil {
		return err
	}
	if err := f.sweep(ctx, h, c, list, seq); err != nil {
		return err
	}
	fl := c.FollowExits(list.Epoch, list.ExitSeq)
	fl.MaxBackoff = f.o.HeartbeatEvery
	for {
		exits, err := fl.Next(ctx)
		if errors.Is(err, agentclient.ErrExitsGone) {
			f.log.Info("exits cursor lost; listing again", "host", h.rec.Name, "error", err)
			return nil
		}
		if err != nil {
			return err
		}
		f.exited(h, exits)
	}
}

// sweep reconciles the registry with a list of the host taken as list
// number seq: instances of an older generation, or marked stale, are
// stopped; instances the registry does not know are adopted; instances it
// placed that the list lacks are reported ended. Then the host is synced.
func (f *Fleet) sweep(ctx context.Context, h *host, c *agentclient.Client, list api.InstanceList, seq uint64) error {
	f.mu.Lock()
	gen := h.rec.Generation
	listed := make(map[string]bool, len(list.Instances))
	var stop []api.InstanceInfo
	for _, in := range list.Instances {
		listed[in.ID] = true
		g := labelUint(in.Labels, LabelGeneration)
		if _, ok := h.stale[in.ID]; ok || g < gen {
			h.stale[in.ID] = in.App
			stop = append(stop, in)
			continue
		}
		if h.instances[in.ID] == nil {
			f.placeLocked(h, in.ID, &placed{app: in.App, release: in.Release, gen: g, addr: in.Addr, seen: seq,
				cpu: labelFloat(in.Labels, LabelCPU), mem: int64(labelUint(in.Labels, LabelMemory))})
		}
	}
	var gone []pendingExit
	now := f.o.Now()
	for id, p := range h.instances {
		if p.starting || p.seen >= seq || listed[id] {
			continue
		}
		f.unplaceLocked(h, id)
		if !p.ended {
			gone = append(gone, pendingExit{v: f.views[p.app], e: controller.Exit{ID: id, Code: -1, At: now,
				Reason: fmt.Sprintf("no longer runs on host %s (its end was not reported)", h.rec.Name)}})
		}
	}
	for id := range h.stale {
		if !listed[id] {
			delete(h.stale, id)
		}
	}
	h.followEpoch = list.Epoch
	term := f.term()
	f.mu.Unlock()
	f.deliver(gone)

	errs := make([]error, len(stop))
	var wg sync.WaitGroup
	for i, in := range stop {
		wg.Go(func() {
			if err := c.Stop(ctx, term, in.ID); err != nil && !errors.Is(err, agentclient.ErrNotFound) {
				errs[i] = err
				return
			}
			g := labelUint(in.Labels, LabelGeneration)
			f.event(api.Event{Instance: in.ID, Release: in.Release, Reason: fmt.Sprintf(
				"stale instance %s of %s stopped on host %s (generation %d, host at %d)", in.ID, in.App, h.rec.Name, g, gen)}, slog.LevelInfo)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop stale instances on host %s: %w", h.rec.Name, err)
	}

	f.mu.Lock()
	if ctx.Err() != nil || h.synced {
		f.mu.Unlock()
		return ctx.Err()
	}
	h.synced = true
	f.readyAt = f.o.Now() // unplaced.go
	back := h.wasLost
	h.wasLost = false
	if h.rec.Draining {
		f.hostEvacuationsLocked(h) // drain.go: what is left there moves on
	}
	f.notifyLocked()
	f.mu.Unlock()
	if back {
		f.event(api.Event{Reason: fmt.Sprintf("host %s back (generation %d): %d stale instances stopped", h.rec.Name, gen, len(stop))}, slog.LevelInfo)
	} else {
		f.event(api.Event{Reason: fmt.Sprintf("host %s ready: %d instances running", h.rec.Name, len(list.Instances)-len(stop))}, slog.LevelInfo)
	}
	return nil
}

// exited records exits the host reported and delivers those of instances
// placed there to their apps.
func (f *Fleet) exited(h *host, exits []api.InstanceExit) {
	var out []pendingExit
	var hints []pendingEnd
	f.mu.Lock()
	for _, x := range exits {
		p := h.instances[x.ID]
		if x.Ended { // a hint; its exit follows
			if p != nil && !p.ended && f.views[p.app] != nil {
				hints = append(hints, pendingEnd{v: f.views[p.app], id: x.ID})
			}
			continue
		}
		if p == nil {
			delete(h.stale, x.ID) // reported ended already, or never ours
			continue
		}
		if p.ended {
			continue
		}
		if p.starting {
			f.endLocked(h, p) // Start forgets it when its call returns
		} else {
			f.unplaceLocked(h, x.ID)
		}
		f.ended.add(x.ID, h.rec.Name, x.LogTail)
		out = append(out, pendingExit{v: f.views[p.app], e: controller.Exit{ID: x.ID, Code: x.Code, Signal: x.Signal,
			Stopped: x.Stopped, At: x.At}})
	}
	f.mu.Unlock()
	for _, h := range hints {
		select {
		case h.v.ended <- h.id:
		default: // a hint: the exit that follows is the record
		}
	}
	f.deliver(out)
}

// pendingEnd is an instance seen to end before its exit, for its app's
// view (controller.Ender).
type pendingEnd struct {
	v  *view
	id string
}

// pendingExit is an exit to deliver to an app's view (nil: no controller
// asked for the app; dropped).
type pendingExit struct {
	v *view
	e controller.Exit
}

func (f *Fleet) deliver(out []pendingExit) {
	for _, p := range out {
		if p.v != nil {
			p.v.push(p.e)
		}
	}
}

func labelUint(labels map[string]string, key string) uint64 {
	v, err := strconv.ParseUint(labels[key], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func labelFloat(labels map[string]string, key string) float64 {
	v, err := strconv.ParseFloat(labels[key], 64)
	if err != nil || v < 0 || v != v {
		return 0
	}
	return v
}

// endedRing remembers the host and the output's last lines of the latest
// ended instances, for the controller's look at a crash's logs after the
// exit.
type endedRing struct {
	ids  []string
	byID map[string]endedInstance
}

type endedInstance struct {
	host, logTail string
}

const endedKept = 1024

func (r *endedRing) add(id, host, logTail string) {
	if r.byID == nil {
		r.byID = map[string]endedInstance{}
	}
	if _, ok := r.byID[id]; !ok {
		r.ids = append(r.ids, id)
	}
	r.byID[id] = endedInstance{host: host, logTail: logTail}
	if len(r.ids) > endedKept {
		delete(r.byID, r.ids[0])
		r.ids = r.ids[1:]
	}
}

func (r *endedRing) get(id string) (endedInstance, bool) {
	e, ok := r.byID[id]
	return e, ok
}
