package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestBusyHostNotLost (issue 14): a real agent over mutual TLS starts eight
// instances whose artifact fetch the server holds, so each start call
// holds its connection; then the agent finishes no new handshake (held, as
// on a host too loaded to finish one in time) and one more start comes,
// which takes the first connection to come free. The fleet's heartbeats
// are still answered, for more than LostAfter, the host is never declared
// lost, and once the fetch and the handshakes are let go every start
// succeeds on it. (When the heartbeat shared the starts' connections, the
// last start took the heartbeat's, the next heartbeat needed a handshake,
// and the host was declared lost while starting.)
func TestBusyHostNotLost(t *testing.T) {
	const starts, late = 12, 4
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	h := s.join(t, "h1", "a", 8, 1024*mib)
	waitState(t, s.fleet, api.HostReady, "h1")

	fetches := make(chan struct{})
	handshakes := make(chan struct{})
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(handshakes)
			close(fetches)
		})
	}
	t.Cleanup(release)
	s.mu.Lock()
	s.fetches = fetches
	s.mu.Unlock()

	web := s.fleet.Host("web")
	errs := make(chan error, starts)
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(i int) {
		wg.Go(func() {
			id := fmt.Sprintf("web-%d", i)
			if _, err := web.Start(ctx, s.spec(t, "web", id, 0.5, 64*mib)); err != nil {
				errs <- fmt.Errorf("start %s: %w", id, err)
			}
		})
	}
	for i := range starts - late {
		start(i)
	}
	if err := testenv.WaitFor(ctx, func() error {
		if n := h.starts.Load(); n < starts-late {
			return fmt.Errorf("%d of %d starts reached the agent", n, starts-late)
		}
		return nil
	}); err != nil {
		release()
		t.Fatal(err)
	}
	h.handshakes.Store(&handshakes)
	for i := starts - late; i < starts; i++ {
		start(i)
	}

	// Heartbeats come at most every heartbeatEvery: lostAfter's worth of
	// them and two more span more than lostAfter. (Not more: the last
	// start waits for a handshake, which gives up after 10 s.)
	want := h.beats.Load() + int64(lostAfter/heartbeatEvery) + 2
	lost := errors.New("lost")
	wctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	err := testenv.WaitFor(wctx, func() error {
		if s.countEvents("unreachable") > 0 {
			stop(lost) // no use waiting on
			return lost
		}
		if n := h.beats.Load(); n < want {
			return fmt.Errorf("%d heartbeats answered, want %d", n, want)
		}
		return nil
	})
	if errors.Is(context.Cause(wctx), lost) || s.countEvents("unreachable") > 0 {
		release()
		t.Fatalf("host h1 declared lost while it answered, busy starting: %s", status(s.fleet, "h1").Reason)
	}
	if err != nil {
		release()
		t.Fatal(err)
	}
	if st := status(s.fleet, "h1"); st.State != api.HostReady {
		release()
		t.Fatalf("host h1 is %s (%s) while busy starting, want ready", st.State, st.Reason)
	}

	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := h.running(); len(got) != starts || !slices.Contains(got, "web-0") {
		t.Errorf("h1 runs %v, want %d instances of web", got, starts)
	}
	if n := s.countEvents("unreachable"); n > 0 {
		t.Errorf("%d events of h1 unreachable", n)
	}
}

// TestSilentHostLost: a host whose agent takes the heartbeats but never
// answers them (hung, its connection kept) is still declared lost, and not
// before LostAfter without an answer, though each heartbeat now waits up to
// LostAfter since the last answer.
func TestSilentHostLost(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	h := s.join(t, "h1", "a", 4, 256*mib)
	waitState(t, s.fleet, api.HostReady, "h1")
	silent := make(chan struct{})
	t.Cleanup(func() { close(silent) })
	h.silent.Store(&silent)
	if err := testenv.WaitFor(ctx, func() error { return s.eventWith("host h1 unreachable for") }); err != nil {
		t.Fatal(err)
	}
	st := status(s.fleet, "h1")
	if st.State != api.HostUnreachable {
		t.Fatalf("host h1 is %s (%s), want unreachable", st.State, st.Reason)
	}
	d, err := time.ParseDuration(strings.TrimPrefix(st.Reason, "host h1 unreachable for "))
	if err != nil {
		t.Fatalf("reason %q: %v", st.Reason, err)
	}
	// The reason's duration is rounded to 100 ms.
	if d < lostAfter-50*time.Millisecond {
		t.Errorf("host h1 declared lost after %s without an answer, before LostAfter %s", d, lostAfter)
	}
}

// TestStartGraceBeforeFirstAnswer: a fleet that starts (a restart, a new
// leader's term) gives a host it has not heard from yet StartGrace more
// than LostAfter; the host, silent from the fleet's start, is declared
// lost no sooner.
func TestStartGraceBeforeFirstAnswer(t *testing.T) {
	const grace = 2 * lostAfter
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	h := s.join(t, "h1", "a", 4, 256*mib)
	waitState(t, s.fleet, api.HostReady, "h1")
	s.stop()

	silent := make(chan struct{})
	t.Cleanup(func() { close(silent) })
	h.silent.Store(&silent)
	second := s.newFleet(t, func(o *fleet.Options) { o.StartGrace = grace })
	s.run(t, second)
	if err := testenv.WaitFor(ctx, func() error { return s.eventWith("host h1 unreachable for") }); err != nil {
		t.Fatal(err)
	}
	st := status(second, "h1")
	d, err := time.ParseDuration(strings.TrimPrefix(st.Reason, "host h1 unreachable for "))
	if err != nil {
		t.Fatalf("reason %q: %v", st.Reason, err)
	}
	// The reason's duration is rounded to 100 ms.
	if d < lostAfter+grace-50*time.Millisecond {
		t.Errorf("host h1, silent since the fleet started, declared lost after %s, before LostAfter+StartGrace %s", d, lostAfter+grace)
	}
}

// TestServerPauseNotCountedAgainstHost (issue 14): the server's own
// goroutines pause (its clock moves on by three times LostAfter at once,
// as for a process that did not run meanwhile: a starved server at a
// large fleet's failover) while a host refuses its heartbeats, three in a
// row: the host is not declared lost, since it was silent for less than
// LostAfter of the time the server could hear it, and it is ready once it
// answers again. (Before, the server counted its own pause against the
// host and declared it lost at the second refused heartbeat.) A host
// silent as long while the server runs is lost: TestSilentHostLost.
func TestServerPauseNotCountedAgainstHost(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	h := s.join(t, "h1", "a", 4, 256*mib)
	waitState(t, s.fleet, api.HostReady, "h1")
	s.stop()

	var offset atomic.Int64
	paused := s.newFleet(t, func(o *fleet.Options) {
		o.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	s.run(t, paused)
	waitState(t, paused, api.HostReady, "h1")

	h.unplug()
	offset.Add(int64(3 * lostAfter))
	if err := testenv.WaitFor(ctx, func() error {
		if n := fleet.Misses(paused, "h1"); n < 3 && s.countEvents("host h1 unreachable") == 0 {
			return fmt.Errorf("%d heartbeats refused since the pause, want 3", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := s.countEvents("host h1 unreachable"); n > 0 {
		t.Fatalf("host h1 declared lost for the server's own pause: %s", status(paused, "h1").Reason)
	}
	h.plug()
	if err := testenv.WaitFor(ctx, func() error {
		if n := fleet.Misses(paused, "h1"); n > 0 {
			return fmt.Errorf("%d heartbeats unanswered", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := s.countEvents("host h1 unreachable"); n > 0 {
		t.Fatalf("host h1 declared lost for the server's own pause: %s", status(paused, "h1").Reason)
	}
	if st := status(paused, "h1"); st.State != api.HostReady {
		t.Fatalf("host h1 is %s (%s), want ready", st.State, st.Reason)
	}
}
