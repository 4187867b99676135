package pool

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestDrainIdle(t *testing.T) {
	p, _ := newTestPool(t, Options{}, "a", "b")
	a := target(t, p, "a")
	a.Begin()
	a.Begin()
	idle, err := p.Drain("a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ts := targetStatus(t, p, "a"); ts.State != "draining" || ts.Reason != "draining" {
		t.Fatalf("%+v", ts)
	}
	for range 10 {
		if mustPick(t, p).Target == a {
			t.Fatal("picked a draining target")
		}
	}
	again, err := p.Drain("a", time.Minute)
	if err != nil || again != idle {
		t.Fatalf("second drain: %v, same channel %v", err, again == idle)
	}
	a.End(Outcome{Status: 200})
	if closed(idle) {
		t.Fatal("idle with one request in flight")
	}
	a.End(Outcome{Status: 200})
	if !closed(idle) {
		t.Fatal("not idle with nothing in flight")
	}
	if a.Context().Err() != nil {
		t.Fatal("context canceled without a deadline")
	}
	if len(p.Targets()) != 2 {
		t.Fatal("Drain deleted the target")
	}
	if _, err := p.Drain("zz", time.Second); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown drain: %v", err)
	}
	if _, err := p.Remove("zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown remove: %v", err)
	}
	// Removing a drained target deletes it at once.
	gone, err := p.Remove("a")
	if err != nil || gone != idle || len(p.Targets()) != 1 {
		t.Fatalf("remove drained: %v, targets %d", err, len(p.Targets()))
	}
	mustAdd(t, p, TargetSpec{Addr: "a"}) // the address is free again
}

func TestDrainDeadlineCancelsWithCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Options{Name: "t"})
		mustAdd(t, p, TargetSpec{Addr: "a"})
		a := target(t, p, "a")
		a.Begin() // a WebSocket that would never end by itself
		idle, err := p.Drain("a", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5*time.Second - time.Nanosecond)
		synctest.Wait()
		if a.Context().Err() != nil {
			t.Fatal("canceled before the deadline")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if !errors.Is(context.Cause(a.Context()), ErrDrainDeadline) {
			t.Fatalf("cause %v, want ErrDrainDeadline", context.Cause(a.Context()))
		}
		if closed(idle) {
			t.Fatal("idle before the stream ended")
		}
		a.End(Outcome{ConnErr: true}) // the proxy closes the tunnel
		if !closed(idle) {
			t.Fatal("not idle after the stream ended")
		}
	})
}

func TestDrainZeroTimeoutCancelsAtOnce(t *testing.T) {
	p, _ := newTestPool(t, Options{}, "a")
	a := target(t, p, "a")
	a.Begin()
	if _, err := p.Drain("a", 0); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(a.Context()), ErrDrainDeadline) {
		t.Fatal("zero timeout did not cancel")
	}
}

func TestRemoveWaitsThenDeletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Options{DrainTimeout: time.Minute})
		mustAdd(t, p, TargetSpec{Addr: "a"})
		mustAdd(t, p, TargetSpec{Addr: "b"})
		a := target(t, p, "a")
		a.Begin()
		idle, err := p.Remove("a")
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Targets()) != 2 || targetStatus(t, p, "a").Reason != "removing" {
			t.Fatal("removed while busy")
		}
		if err := p.Add(TargetSpec{Addr: "a"}); !errors.Is(err, ErrExists) {
			t.Fatalf("re-add while removing: %v", err)
		}
		again, _ := p.Drain("a", time.Second)
		if again != idle {
			t.Fatal("drain of a removing target returned another channel")
		}
		a.End(Outcome{Status: 200})
		<-idle
		if ts := p.Targets(); len(ts) != 1 || ts[0].Addr() != "b" {
			t.Fatalf("targets after remove: %v", ts)
		}
		// Remove's own deadline (DrainTimeout) applies too.
		b := target(t, p, "b")
		b.Begin()
		idle, _ = p.Remove("b")
		time.Sleep(time.Minute)
		synctest.Wait()
		if !errors.Is(context.Cause(b.Context()), ErrDrainDeadline) {
			t.Fatal("Remove deadline did not cancel")
		}
		b.End(Outcome{ConnErr: true})
		<-idle
		if len(p.Targets()) != 0 {
			t.Fatal("b not deleted")
		}
	})
}

// TestConcurrent exercises every entry point at once for the race detector
// and checks the in-flight bookkeeping afterwards.
func TestConcurrent(t *testing.T) {
	for _, algo := range []Algorithm{RoundRobin, LeastRequests, P2C} {
		t.Run(algo.String(), func(t *testing.T) {
			p := New(Options{
				Algorithm: algo, SlowStart: time.Millisecond, DrainTimeout: time.Hour,
				Outlier: Outlier{ConsecutiveFailures: 3, BaseEjection: time.Millisecond},
				Sticky:  Sticky{Cookie: "s", Secret: testSecret, TTL: time.Hour, SockJSPrefixes: []string{"/sockjs"}},
			})
			for i := range 4 {
				mustAdd(t, p, TargetSpec{Addr: addr(i), Weight: i + 1})
			}
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					var cookie *http.Cookie
					for i := range 2000 {
						var r *http.Request
						switch i % 3 {
						case 1:
							r = reqWith(cookie)
						case 2:
							r = sockReq(fmt.Sprintf("s%d", i%17))
						}
						ch, err := p.Pick(keyOf(p, r), nil)
						if err != nil {
							continue // everything may be draining for a moment
						}
						if ch.Cookie != nil {
							cookie = ch.Cookie
						}
						ch.Target.Begin()
						status := 200
						if (i+w)%7 == 0 {
							status = 503
						}
						ch.Target.End(Outcome{Status: status, TTFB: time.Duration(i%5+1) * time.Millisecond})
					}
				})
			}
			wg.Go(func() {
				for i := range 300 {
					a := addr(4 + i%3)
					if err := p.Add(TargetSpec{Addr: a}); err == nil {
						_ = p.SetHealth(a, i%2 == 0, "flap")
						_ = p.SetWeight(a, i%256)
						idle, _ := p.Remove(a)
						if idle != nil && i%5 == 0 {
							<-idle
						}
					}
					_ = p.Status()
				}
			})
			wg.Wait()
			for _, x := range p.Targets() {
				if n := x.InFlight(); n != 0 {
					t.Errorf("%s: %d in flight after all requests ended", x.Addr(), n)
				}
			}
		})
	}
}
