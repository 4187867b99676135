package pool

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRoundRobinWeights(t *testing.T) {
	p, _ := newTestPool(t, Options{})
	for i, w := range []int{1, 2, 3} {
		mustAdd(t, p, TargetSpec{Addr: addr(i), Weight: w})
	}
	got := counts(t, p, 600)
	for i, want := range []int{100, 200, 300} {
		if got[addr(i)] != want {
			t.Errorf("%s: %d picks, want %d (all: %v)", addr(i), got[addr(i)], want, got)
		}
	}
}

func TestRoundRobinSmoothOrder(t *testing.T) {
	// nginx's documented smooth order for weights {5, 1, 1}.
	p, _ := newTestPool(t, Options{Rand: func(int) int { return 0 }})
	for _, s := range []TargetSpec{{Addr: "a", Weight: 5}, {Addr: "b", Weight: 1}, {Addr: "c", Weight: 1}} {
		mustAdd(t, p, s)
	}
	var b strings.Builder
	for range 14 {
		b.WriteString(mustPick(t, p).Target.Addr())
	}
	if got, want := b.String(), "aabacaaaabacaa"; got != want {
		t.Fatalf("order %s, want %s", got, want)
	}
}

func TestLeastRequestsWeighted(t *testing.T) {
	p, _ := newTestPool(t, Options{Algorithm: LeastRequests})
	mustAdd(t, p, TargetSpec{Addr: "a", Weight: 2})
	mustAdd(t, p, TargetSpec{Addr: "b", Weight: 1})
	// Hold every request open: picks must keep in-flight/weight level.
	got := map[string]int{}
	for range 30 {
		ch := mustPick(t, p)
		ch.Target.Begin()
		got[ch.Target.Addr()]++
	}
	if got["a"] < 19 || got["a"] > 21 {
		t.Fatalf("a got %d of 30 held requests, want 20±1 (%v)", got["a"], got)
	}
	// With b busy, idle picks go to a.
	for _, x := range p.Targets() {
		for x.InFlight() > 0 {
			x.End(Outcome{Status: 200})
		}
	}
	b := target(t, p, "b")
	b.Begin()
	for range 10 {
		if a := mustPick(t, p).Target.Addr(); a != "a" {
			t.Fatalf("picked %s with b busy and a idle", a)
		}
	}
}

func TestLeastRequestsTiesSpread(t *testing.T) {
	p, _ := newTestPool(t, Options{Algorithm: LeastRequests}, "a", "b", "c")
	got := counts(t, p, 3000)
	for _, a := range []string{"a", "b", "c"} {
		if got[a] < 800 {
			t.Errorf("%s got %d of 3000 tied picks (%v)", a, got[a], got)
		}
	}
}

func TestP2CPrefersFastAndIdle(t *testing.T) {
	p, _ := newTestPool(t, Options{Algorithm: P2C}, "fast", "slow")
	target(t, p, "fast").Begin()
	target(t, p, "fast").End(Outcome{Status: 200, TTFB: 10 * time.Millisecond})
	target(t, p, "slow").Begin()
	target(t, p, "slow").End(Outcome{Status: 200, TTFB: 100 * time.Millisecond})
	for range 100 {
		if a := mustPick(t, p).Target.Addr(); a != "fast" {
			t.Fatalf("picked %s, want fast", a)
		}
	}
	// Load counts too: 20 in flight on fast costs more than 1 slow.
	for range 20 {
		target(t, p, "fast").Begin()
	}
	if a := mustPick(t, p).Target.Addr(); a != "slow" {
		t.Fatalf("picked %s with fast overloaded, want slow", a)
	}
	if got := targetStatus(t, p, "fast").EWMA; got != 10*time.Millisecond {
		t.Fatalf("EWMA %v, want 10ms", got)
	}
}

func TestP2CEWMA(t *testing.T) {
	p, _ := newTestPool(t, Options{Algorithm: P2C}, "a")
	a := target(t, p, "a")
	for _, ttfb := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		a.Begin()
		a.End(Outcome{Status: 200, TTFB: ttfb})
	}
	a.Begin()
	a.End(Outcome{ConnErr: true}) // no latency sample
	if got := a.ewma.Load(); got != int64(130*time.Millisecond) {
		t.Fatalf("EWMA %v, want 130ms (alpha 0.3)", time.Duration(got))
	}
}

func TestP2CSpreadsAndWeights(t *testing.T) {
	p, _ := newTestPool(t, Options{Algorithm: P2C}, "a", "b", "c")
	got := counts(t, p, 3000) // equal latency, no load: ties keep the first draw
	for _, a := range []string{"a", "b", "c"} {
		if got[a] < 800 {
			t.Errorf("%s got %d of 3000 (%v)", a, got[a], got)
		}
	}
	if err := p.SetWeight("c", 4); err != nil {
		t.Fatal(err)
	}
	got = counts(t, p, 3000)
	if got["c"] <= got["a"] || got["c"] <= got["b"] {
		t.Errorf("weight 4 target not preferred: %v", got)
	}
}

func TestTriedSkipped(t *testing.T) {
	for _, algo := range []Algorithm{RoundRobin, LeastRequests, P2C} {
		t.Run(algo.String(), func(t *testing.T) {
			p, _ := newTestPool(t, Options{Algorithm: algo}, "a", "b", "c")
			a, b := target(t, p, "a"), target(t, p, "b")
			for range 50 {
				if got := mustPick(t, p, a, b).Target.Addr(); got != "c" {
					t.Fatalf("picked %s, tried a and b", got)
				}
			}
			for range 50 {
				if got := mustPick(t, p, a).Target.Addr(); got == "a" {
					t.Fatal("picked tried a")
				}
			}
			if _, err := p.Pick(nil, p.Targets()); !errors.Is(err, ErrNoTarget) {
				t.Fatalf("all tried: err %v, want ErrNoTarget", err)
			}
		})
	}
}

func TestEmptyPool(t *testing.T) {
	p, _ := newTestPool(t, Options{})
	if _, err := p.Pick(nil, nil); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("err %v, want ErrNoTarget", err)
	}
}

func TestSlowStart(t *testing.T) {
	p, clk := newTestPool(t, Options{SlowStart: 100 * time.Second}, "old")
	clk.Advance(time.Hour) // old is fully ramped
	mustAdd(t, p, TargetSpec{Addr: "new"})
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	for _, step := range []struct {
		advance time.Duration
		want    float64
	}{{0, 0.1}, {50 * time.Second, 0.55}, {49 * time.Second, 0.91}, {time.Second, 1}} {
		clk.Advance(step.advance)
		if got := targetStatus(t, p, "new").EffectiveWeight; !near(got, step.want) {
			t.Fatalf("after +%v: effective weight %v, want %v", step.advance, got, step.want)
		}
		if got := targetStatus(t, p, "old").EffectiveWeight; got != 1 {
			t.Fatalf("old effective weight %v", got)
		}
	}
	// The ramp restarts when a target comes back to healthy, and picks
	// follow it: at 10% the new target gets 1 of every 11.
	if err := p.SetHealth("new", false, "status 500"); err != nil {
		t.Fatal(err)
	}
	if err := p.SetHealth("new", true, ""); err != nil {
		t.Fatal(err)
	}
	got := counts(t, p, 1100)
	if got["new"] != 100 {
		t.Fatalf("ramping target got %d of 1100 picks, want 100 (%v)", got["new"], got)
	}
	clk.Advance(100 * time.Second)
	if got := counts(t, p, 1000); got["new"] != 500 {
		t.Fatalf("ramped target got %d of 1000 picks, want 500", got["new"])
	}
}

func TestFailOpen(t *testing.T) {
	p, _ := newTestPool(t, Options{}, "a", "b", "c")
	if _, err := p.Drain("c", time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"a", "b"} {
		if err := p.SetHealth(a, false, "status 503"); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	for range 10 {
		ch := mustPick(t, p)
		if !ch.FailOpen {
			t.Fatal("FailOpen not set with no healthy target")
		}
		got[ch.Target.Addr()]++
	}
	if got["c"] != 0 || got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("fail-open picks %v, want a and b only, evenly", got)
	}
	if st := p.Status(); !st.FailOpen || st.Healthy != 0 {
		t.Fatalf("status %+v", st)
	}
	if err := p.SetHealth("b", true, ""); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if ch := mustPick(t, p); ch.FailOpen || ch.Target.Addr() != "b" {
			t.Fatalf("after recovery picked %s failOpen=%v", ch.Target.Addr(), ch.FailOpen)
		}
	}
	if p.Status().FailOpen {
		t.Fatal("status still failing open")
	}
	// Draining targets never serve, even failing open.
	for _, a := range []string{"a", "b"} {
		if _, err := p.Drain(a, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Pick(nil, nil); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("all draining: err %v", err)
	}
}

func TestStateAndReason(t *testing.T) {
	p, clk := newTestPool(t, Options{}, "a")
	mustAdd(t, p, TargetSpec{Addr: "b", Unhealthy: true})
	if ts := targetStatus(t, p, "b"); ts.State != "unhealthy" || ts.Reason != "added, awaiting health check" {
		t.Fatalf("b status %+v", ts)
	}
	if ts := targetStatus(t, p, "a"); ts.State != "healthy" || ts.Reason != "added" {
		t.Fatalf("a status %+v", ts)
	}
	clk.Advance(time.Minute)
	if err := p.SetHealth("a", false, "status 500"); err != nil {
		t.Fatal(err)
	}
	ts := targetStatus(t, p, "a")
	if ts.State != "unhealthy" || ts.Reason != "health check failed: status 500" || !ts.Since.Equal(clk.Now()) {
		t.Fatalf("a status %+v", ts)
	}
	if target(t, p, "a").State() != StateUnhealthy {
		t.Fatal("Target.State disagrees")
	}
	if err := p.SetHealth("zz", true, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if err := p.Add(TargetSpec{Addr: "a"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := p.Add(TargetSpec{Addr: "w", Weight: 257}); err == nil {
		t.Fatal("weight 257 accepted")
	}
	if err := p.SetWeight("b", -1); err == nil {
		t.Fatal("weight -1 accepted")
	}
	if err := p.SetWeight("b", 0); err != nil || targetStatus(t, p, "b").Weight != 1 {
		t.Fatalf("weight 0: %v", err)
	}
}

func TestParseNames(t *testing.T) {
	for _, a := range []Algorithm{RoundRobin, LeastRequests, P2C} {
		got, err := ParseAlgorithm(a.String())
		if err != nil || got != a {
			t.Fatalf("ParseAlgorithm(%q) = %v, %v", a.String(), got, err)
		}
		var u Algorithm
		b, _ := a.MarshalText()
		if err := u.UnmarshalText(b); err != nil || u != a {
			t.Fatalf("text round trip of %v: %v %v", a, u, err)
		}
	}
	if _, err := ParseAlgorithm("random"); err == nil {
		t.Fatal("unknown algorithm accepted")
	}
	for s := StateHealthy; s <= StateDraining; s++ {
		if got, err := ParseState(s.String()); err != nil || got != s {
			t.Fatalf("ParseState(%q) = %v, %v", s.String(), got, err)
		}
	}
	if err := (Options{Sticky: Sticky{Cookie: "s", Secret: []byte("short")}}).Validate(); err == nil {
		t.Fatal("short secret validated")
	}
}

// TestScheduleOfEqualWeights: targets of one weight (whatever it is) are
// scheduled in order, as the smooth round robin's full cycle does.
func TestScheduleOfEqualWeights(t *testing.T) {
	for n := 1; n <= 64; n++ {
		for _, units := range []int64{1, 100, unitsPerWeight} {
			c := make([]entry, n)
			w := make([]int64, n)
			for i := range c {
				c[i] = entry{units: units}
				w[i] = 1
			}
			got, want := schedule(c), smooth(w, int64(n))
			if !slices.Equal(got, want) {
				t.Fatalf("%d targets of %d units: schedule %v, the full cycle %v", n, units, got, want)
			}
		}
	}
	// Unequal weights still take the full cycle: 2:1 is a, b, a.
	if got := schedule([]entry{{units: 2}, {units: 1}}); !slices.Equal(got, []int32{0, 1, 0}) {
		t.Fatalf("schedule of 2:1 = %v", got)
	}
}
